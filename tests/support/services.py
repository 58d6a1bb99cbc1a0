"""Settings that point a service at this test's database copy and its private broker names."""

from __future__ import annotations

from typing import TypeVar

from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def settings_for(cls: type[S], service: str, stack, database, names: str, **overrides) -> S:
    """`cls` configured for one test: its own database, prefix, fast Kafka groups, quick retries."""
    values = dict(
        environment="test",
        database_url=database.url(service),
        amqp_url=stack.amqp_url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        broker_prefix=names,
        kafka_fast_join=True,
        outbox_poll_interval=0.5,
        rabbit_retry_delays_ms=(50, 100, 200),
        kafka_retry_backoff=(0.05, 0.1, 0.2),
        db_pool_size=5,
    )
    values.update(overrides)
    return cls(_env_file=None, **values)
