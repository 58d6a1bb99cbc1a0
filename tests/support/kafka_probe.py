"""Read what is really on a Kafka topic, bypassing the adapter under test."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.eventually import eventually


async def read_records(
    bootstrap: str, topic: str, *, partitions: int, count: int
) -> list[ConsumerRecord]:
    """The first `count` records of a broker-side topic, ordered by partition and offset."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, p) for p in range(partitions)])
        await reader.seek_to_beginning()
        records: list[ConsumerRecord] = []

        async def have_all() -> bool:
            batch = await reader.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
            return len(records) >= count

        await eventually(have_all, message=f"{count} records on {topic}")
    finally:
        await reader.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def record_count(bootstrap: str, topic: str, *, partitions: int) -> int:
    """How many records a broker-side topic holds, from its start and end offsets."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await reader.end_offsets(tps)
        starts = await reader.beginning_offsets(tps)
    finally:
        await reader.stop()
    return sum(ends[tp] - starts[tp] for tp in tps)


async def committed(bootstrap: str, group: str, topic: str, *, partitions: int) -> list[int]:
    """The group's committed offset for each partition of a broker-side topic (-1: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return [offsets[tp].offset if tp in offsets else -1 for tp in tps]


def header_map(record: ConsumerRecord) -> dict[str, str]:
    """Record headers as text, the last value winning."""
    return {name: value.decode() for name, value in record.headers}
