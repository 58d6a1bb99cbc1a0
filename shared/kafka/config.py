"""Retry policy, group timings and dead-letter headers of the Kafka adapter."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import ConsumerRecord

DEAD_LETTER_SUFFIX = ".dlt"

Headers = list[tuple[str, bytes]]

MAX_ERROR_MESSAGE = 1000  # bytes: enough to diagnose without bloating the dead letter


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
