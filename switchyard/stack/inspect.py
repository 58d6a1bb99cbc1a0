"""What `make status` reads from the real servers: queue depths, dead letters, lag, outbox backlog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aio_pika
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from switchyard.stack.endpoints import Endpoints
from switchyard.topology import SERVICES, consumer_groups, wirings, work_queues


@dataclass
class Reading:
    what: str
    name: str
    value: str
    alarm: bool = False


async def queue_depths(amqp_url: str) -> list[Reading]:
    """Depth and consumers of each work queue, and the depth of its dead-letter queue."""
    readings: list[Reading] = []
    # A plain (not robust) connection: robust channels report stale counts on passive declares.
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        for name in work_queues(wirings()):
            for queue_name, dead in ((name, False), (f"{name}.dlq", True)):
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(queue_name, passive=True)
                    depth = queue.declaration_result.message_count
                    consumers = queue.declaration_result.consumer_count
                    value = f"{depth} ready" + ("" if dead else f", {consumers} consumers")
                    readings.append(
                        Reading(
                            "dead letters" if dead else "queue",
                            queue_name,
                            value,
                            dead and depth > 0,
                        )
                    )
                except aio_pika.exceptions.ChannelClosed:
                    readings.append(Reading("queue", queue_name, "not declared yet"))
    return readings


async def kafka_lag(bootstrap: str) -> list[Reading]:
    """Per consumer group: records behind the end of each topic; and the size of each `.dlt`."""
    readings: list[Reading] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await probe.start()
        topics = consumer_groups(wirings())
        names = [name for topic in topics for name in (topic, f"{topic}.dlt")]
        partitions = {
            topic["topic"]: sorted(p["partition"] for p in topic["partitions"])
            for topic in await admin.describe_topics(names)
            if topic["error_code"] == 0
        }
        for topic, groups in topics.items():
            for name in (topic, f"{topic}.dlt"):
                if not partitions.get(name):
                    readings.append(Reading("topic", name, "not created yet"))
                    continue
                tps = [TopicPartition(name, p) for p in partitions[name]]
                ends = await probe.end_offsets(tps)
                if name.endswith(".dlt"):
                    total = sum(ends.values())
                    readings.append(Reading("dead letters", name, f"{total} records", total > 0))
                    continue
                for group in groups:
                    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                    done = {tp: max(committed[tp].offset, 0) for tp in tps if tp in committed}
                    lag = sum(ends[tp] - done.get(tp, 0) for tp in tps)
                    readings.append(
                        Reading("lag", f"{group} <- {name}", f"{lag} records", lag > 100)
                    )
    finally:
        await probe.stop()
        await admin.close()
    return readings


async def outbox_backlog(database_url: str) -> list[Reading]:
    """Unsent rows and the age of the oldest, per service schema."""
    readings: list[Reading] = []
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        for schema in SERVICES:  # each service's schema is named after it
            exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.outbox")
            if not exists:
                continue
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
                f"FROM {schema}.outbox WHERE sent_at IS NULL"
            )
            age = f", oldest {row['age']:.1f}s" if row["n"] else ""
            readings.append(Reading("outbox", schema, f"{row['n']} unsent{age}", row["n"] > 100))
    finally:
        await conn.close()
    return readings


async def inspect(endpoints: Endpoints) -> list[Reading]:
    """Every reading; a server that does not answer gives one alarm line instead of a crash."""
    parts = await asyncio.gather(
        queue_depths(endpoints.amqp_url),
        kafka_lag(endpoints.kafka_bootstrap),
        outbox_backlog(endpoints.database_url),
        return_exceptions=True,
    )
    readings: list[Reading] = []
    for source, part in zip(("rabbitmq", "kafka", "postgres"), parts, strict=True):
        if isinstance(part, BaseException):
            readings.append(Reading("error", source, f"{type(part).__name__}: {part}", True))
        else:
            readings.extend(part)
    return readings
