"""Settings that point a service at this test's database copy and its private broker names."""

from __future__ import annotations

from typing import TypeVar

import aio_pika

from shared.kafka import GroupTimings
from shared.rabbit import parking_queue, retry_queue
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

# Test members' group timings: the local broker's group.min.session.timeout.ms is 1 s.
QUICK_GROUPS = GroupTimings(session_timeout_ms=3000, heartbeat_interval_ms=300)
# Quick RabbitMQ retries (seconds): the tests delete a retry queue per delay afterwards.
RETRY_DELAYS = (0.05, 0.1, 0.2)


def settings_for(cls: type[S], service: str, stack, database, names: str, **overrides) -> S:
    """`cls` configured for one test: its own database, prefix, fast Kafka groups, quick retries."""
    values = dict(
        environment="test",
        database_url=database.url(service),
        amqp_url=stack.amqp_url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        broker_prefix=names,
        # Short sessions, which the local broker allows (broker.properties): a killed member's
        # partitions move in seconds.
        kafka_session_timeout_ms=QUICK_GROUPS.session_timeout_ms,
        kafka_heartbeat_interval_ms=QUICK_GROUPS.heartbeat_interval_ms,
        outbox_poll_interval=0.5,
        rabbit_retry_delays=RETRY_DELAYS,
        kafka_retry_delays=(0.05, 0.1),
        db_pool_size=5,
    )
    values.update(overrides)
    return cls(_env_file=None, **values)


async def delete_work_queues(amqp_url: str, *work: str) -> None:
    """Quorum queues are not free: drop each work queue of a test, its parking and retry queues."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        for queue in work:
            for name in [
                queue,
                parking_queue(queue),
                *(retry_queue(queue, d) for d in RETRY_DELAYS),
            ]:
                await channel.queue_delete(name)
