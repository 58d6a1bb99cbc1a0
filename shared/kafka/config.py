"""Retry policy, client timings and dead-letter headers of the Kafka adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

DEAD_LETTER_SUFFIX = ".dlt"

Headers = list[tuple[str, bytes]]

MAX_ERROR_MESSAGE = 1000  # bytes: enough to diagnose without bloating the dead letter

# Tansu (our local broker) and the test suite want a group to settle in about a second and a
# crashed member's partitions to move in two or three; broker defaults take 5 s and 17 s.
FAST_JOIN_CONSUMER: dict[str, Any] = {
    "session_timeout_ms": 1500,
    "heartbeat_interval_ms": 150,
    "rebalance_timeout_ms": 1000,
    "max_poll_interval_ms": 10_000,
    "metadata_max_age_ms": 5000,
    # Tansu answers a fetch only when this wait is over, records or not: 500 ms by default.
    # 100 ms keeps a hop quick without a member's polling costing the broker a tenth of a core
    # (at 20 ms, three idle members kept Tansu busy a fifth of the time).
    "fetch_max_wait_ms": 100,
}
FAST_JOIN_PRODUCER: dict[str, Any] = {"metadata_max_age_ms": 5000}


@dataclass(frozen=True)
class KafkaRetry:
    """How often a record is handed to its handler, and how long to wait between attempts.

    `backoff[n]` is the wait before attempt n + 2; the last wait repeats when attempts outnumber it.
    """

    attempts: int = 3
    backoff: tuple[float, ...] = (0.2, 1.0, 5.0)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not self.backoff:
            raise ValueError("backoff needs at least one delay")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.backoff[min(attempt, len(self.backoff)) - 1]


def parking_headers(record: ConsumerRecord, exc: BaseException, attempts: int) -> Headers:
    """Why and from where a record was moved to its dead-letter topic."""
    return [
        ("x-error-type", type(exc).__name__.encode()),
        ("x-error-message", str(exc).encode()[:MAX_ERROR_MESSAGE]),
        ("x-attempts", str(attempts).encode()),
        ("x-original-topic", record.topic.encode()),
        ("x-original-partition", str(record.partition).encode()),
        ("x-original-offset", str(record.offset).encode()),
    ]
