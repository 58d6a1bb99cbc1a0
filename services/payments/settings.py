"""Settings of the payments service."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.webhooks import DEVELOPMENT_SECRET, is_development_secret, parse_secrets, secret_key

_LOCAL = ("development", "test")


class PaymentsSettings(ServiceSettings):
    """Everything payments reads from the environment; the common part is in ServiceSettings."""

    # A rejected setting must not print the secret it rejected into the start-up log.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    service_name: str = "payments"
    # PSP_WEBHOOK_SECRET: `whsec_<base64>`; several, space-separated, while a secret is rotated.
    psp_webhook_secret: SecretStr = SecretStr("")
    webhook_tolerance_seconds: int = Field(default=300, gt=0)  # Standard Webhooks: 5 minutes
    webhook_max_body_bytes: int = Field(default=64 * 1024, gt=0)

    @model_validator(mode="after")
    def _safe_webhook_secret(self) -> PaymentsSettings:
        # The development secret is public (.env.example): only local stacks may use it.
        secrets = self.psp_webhook_secret.get_secret_value()
        if not parse_secrets(secrets):
            if self.environment not in _LOCAL:
                raise ValueError(f"PSP_WEBHOOK_SECRET must be set in {self.environment}")
            secrets = DEVELOPMENT_SECRET
            self.psp_webhook_secret = SecretStr(secrets)
        for secret in parse_secrets(secrets):
            secret_key(secret)  # a malformed secret stops the service here, not at a webhook
        if self.environment not in _LOCAL and is_development_secret(secrets):
            raise ValueError(
                f"PSP_WEBHOOK_SECRET is the public development secret; "
                f"it is refused in {self.environment}"
            )
        return self
