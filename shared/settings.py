"""Settings every service reads from the environment (and `.env`): servers, names, environment."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """The part of a service's settings that is the same for all three."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "switchyard"  # each service's settings name it: logs and traces say so
    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql://switchyard:switchyard@127.0.0.1:25432/switchyard"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:25672/"
    kafka_bootstrap_servers: str = "127.0.0.1:29092"
    # Prepended to every exchange, queue, topic and consumer group: isolates tests and tenants.
    broker_prefix: str = ""
    # Short group-membership timeouts: a crashed member's partitions move in seconds (FACTS).
    kafka_fast_join: bool = True
    kafka_idempotence: bool = False  # Tansu (the local Kafka) refuses idempotent producers
    db_pool_size: int = 10
    db_statement_timeout_ms: int = 5000
    outbox_poll_interval: float = 1.0
    rabbit_retry_delays_ms: tuple[int, ...] = (1000, 5000, 25000)
    kafka_retry_attempts: int = 3
    kafka_retry_backoff: tuple[float, ...] = (0.2, 1.0, 5.0)
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"
    # Spans are always made (their ids travel in messages and logs); exported only when asked:
    # "otlp" sends them to OTEL_EXPORTER_OTLP_ENDPOINT, "console" prints them.
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_exporter_otlp_endpoint: str | None = None  # the standard variable, also read from .env
