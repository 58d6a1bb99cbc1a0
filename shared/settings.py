"""Settings every service reads from the environment (and `.env`): servers, names, environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.retry import RetryPolicy


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
    # Group membership, within what every Kafka broker accepts by default (6 s to 30 min): a
    # crashed member's partitions move after the session timeout; a stopped one leaves at once.
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(1000, ge=100)  # how soon members hear of a rebalance
    # Each topic's replicas and the replicas a write must reach (acks=all): 3 and 2 on a cluster.
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_min_insync_replicas: int = Field(1, ge=1)
    db_pool_size: int = 10
    # Seconds a request waits for a pooled connection (a free one, or a new one connecting) before
    # it is answered 503 (retry later).
    db_pool_timeout: float = Field(30.0, gt=0)
    db_statement_timeout_ms: int = 5000
    outbox_poll_interval: float = 1.0
    # /readyz answers 503 once messages have waited this long for a consumer that finished none
    # of them (a stuck handler, or a Kafka member that stopped fetching after a broker restart).
    consumer_stall_seconds: float = Field(60.0, gt=0)
    # Seconds between readings of the oldest dead letter's age (switchyard_dead_letter_...).
    dead_letter_watch_interval: float = Field(15.0, gt=0)
    # Seconds a failed message waits before each retry; after the last it is parked. RabbitMQ
    # waits in a retry queue (one per delay), Kafka in-process with its partition held, so short.
    rabbit_retry_delays: tuple[float, ...] = (1.0, 5.0, 25.0)
    kafka_retry_delays: tuple[float, ...] = (0.2, 1.0)
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"
    # Spans are always made (their ids travel in messages and logs); exported only when asked:
    # "otlp" sends them to OTEL_EXPORTER_OTLP_ENDPOINT, "console" prints them.
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_exporter_otlp_endpoint: str | None = None  # the standard variable, also read from .env

    @model_validator(mode="after")
    def _kafka_settings_fit_together(self) -> ServiceSettings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError("KAFKA_MIN_INSYNC_REPLICAS cannot exceed KAFKA_REPLICATION_FACTOR")
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise ValueError("KAFKA_HEARTBEAT_INTERVAL_MS must be below KAFKA_SESSION_TIMEOUT_MS")
        return self

    @model_validator(mode="after")
    def _retry_delays_make_policies(self) -> ServiceSettings:
        for name in ("rabbit_retry_delays", "kafka_retry_delays"):
            try:
                RetryPolicy(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name.upper()}: {exc}") from None
        return self

    @property
    def rabbit_retry(self) -> RetryPolicy:
        return RetryPolicy(self.rabbit_retry_delays)

    @property
    def kafka_retry(self) -> RetryPolicy:
        return RetryPolicy(self.kafka_retry_delays)
