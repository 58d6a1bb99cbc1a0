"""Settings of the users service."""

from shared.settings import ServiceSettings


class UsersSettings(ServiceSettings):
    """Everything users reads from the environment; the common part is in ServiceSettings."""

    service_name: str = "users"
