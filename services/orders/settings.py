"""Settings of the orders service."""

from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    """Everything orders reads from the environment; the common part is in ServiceSettings."""

    service_name: str = "orders"
    users_url: str = "http://127.0.0.1:8001"
    users_timeout: float = 2.0  # per attempt; an order waits at most attempts x timeout for users
    users_attempts: int = 3
