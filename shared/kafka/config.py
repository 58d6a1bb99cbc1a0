"""Group timings, dead-letter headers and the admin client of the Kafka adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from shared import failure_headers as fh

DEAD_LETTER_SUFFIX = ".dlt"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class GroupTimings:
    """How a member keeps its place in a group; the defaults are inside any broker's limits."""

    session_timeout_ms: int = 10_000  # silent this long, a member's partitions move on
    heartbeat_interval_ms: int = 1000  # members hear of a rebalance within this

    def consumer_settings(self) -> dict[str, int]:
        return {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }


def parking_headers(record: ConsumerRecord, exc: BaseException, attempts: int) -> Headers:
    """Why and from where a record was moved to its dead-letter topic."""
    why = {**fh.error_headers(exc), fh.ATTEMPTS: str(attempts)}
    where = {
        fh.ORIGINAL_TOPIC: record.topic,
        fh.ORIGINAL_PARTITION: str(record.partition),
        fh.ORIGINAL_OFFSET: str(record.offset),
    }
    return [(name, value.encode()) for name, value in (why | where).items()]


@asynccontextmanager
async def admin_client(bootstrap: str, client_id: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client, started, and closed however the block ends (a failed start included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()
