"""What `make status` reads from the real servers: queue depths, dead letters, lag, outbox backlog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.dead_letters import KafkaDeadLetters, RabbitDeadLetters
from shared.dead_letters.letter import readable_age
from shared.rabbit import cluster
from shared.rabbit.depth import queue_depth
from switchyard.stack.endpoints import Endpoints
from switchyard.topology import SERVICES, consumer_groups, wirings, work_queues


@dataclass
class Reading:
    what: str
    name: str
    value: str
    alarm: bool = False


async def queue_depths(amqp_url: str, prefix: str = "") -> list[Reading]:
    """Depth and consumers of each work queue; depth and oldest age of its dead-letter queue."""
    readings: list[Reading] = []
    parked: dict[str, Reading] = {}  # work queue -> its .dlq's reading, ages added below
    # A plain (not robust) connection: robust channels report stale counts on passive declares.
    connection = await cluster.connect(amqp_url, timeout=5)  # a cluster: any node that answers
    async with connection:
        for name in work_queues(wirings()):
            for queue_name, dead in ((prefix + name, False), (f"{prefix}{name}.dlq", True)):
                depth = await queue_depth(connection, queue_name)
                if depth is None:
                    readings.append(Reading("queue", queue_name, "not declared yet"))
                    continue
                value = f"{depth.ready} ready" + ("" if dead else f", {depth.consumers} consumers")
                kind = "dead letters" if dead else "queue"
                reading = Reading(kind, queue_name, value, dead and depth.ready > 0)
                readings.append(reading)
                if dead and depth.ready:
                    parked[name] = reading
    # After the depths: reading a message's age takes it for a moment.
    for name, age in (await _oldest_parked(amqp_url, prefix, list(parked))).items():
        parked[name].value += f", oldest {readable_age(age)}"
    return readings


async def kafka_lag(bootstrap: str, prefix: str = "") -> list[Reading]:
    """Per consumer group: records behind the end of each topic; dead letters in each `.dlt`.

    A `.dlt` counts the records `switchyard dlq` has not replayed or purged, and the oldest's age.
    """
    readings: list[Reading] = []
    topics = {
        prefix + topic: tuple(prefix + group for group in groups)
        for topic, groups in consumer_groups(wirings()).items()
    }
    kafka_dead = KafkaDeadLetters(bootstrap, prefix=prefix)
    async with kafka_dead:
        parked = await kafka_dead.browse([topic.removeprefix(prefix) for topic in topics])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await probe.start()
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
                    here = [d for d in parked if prefix + d.parked_in.split("[")[0] == name]
                    oldest = f", oldest {readable_age(_max_age(here))}" if here else ""
                    value = f"{len(here)} records{oldest}"
                    readings.append(Reading("dead letters", name, value, bool(here)))
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


async def _oldest_parked(amqp_url: str, prefix: str, queues: list[str]) -> dict[str, float]:
    """Work queue -> age of the message at the head of its `.dlq` (the oldest one)."""
    ages: dict[str, float] = {}
    if not queues:
        return ages
    async with RabbitDeadLetters(amqp_url, prefix=prefix) as dead_letters:
        for queue in queues:
            oldest = await dead_letters.oldest(queue)
            if oldest is not None and (age := oldest.age()) is not None:
                ages[queue] = age
    return ages


def _max_age(letters) -> float | None:
    return max((age for d in letters if (age := d.age()) is not None), default=None)


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
        queue_depths(endpoints.amqp_failover_url),
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
