"""Queue names and arguments: quorum work queue, one delayed retry queue per tier, parking queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Headers the adapter sets; everything else a publisher sends passes through untouched.
ATTEMPTS = "x-attempts"
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
ORIGINAL_QUEUE = "x-original-queue"
# Set by the broker on dead-lettering; our own attempt count replaces them on the next hop.
BROKER_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True)
class RetryPolicy:
    """One retry per delay tier, then the message is parked; `delivery_limit` stops crash loops."""

    delays_ms: tuple[int, ...] = (1000, 5000, 25000)
    # Redeliveries (consumer died, channel closed) before the broker itself parks the message:
    # a message that kills every consumer that takes it must not circulate forever.
    delivery_limit: int = 20

    @property
    def retries(self) -> int:
        return len(self.delays_ms)

    def delay_for(self, attempt: int) -> int | None:
        """The delay after failed attempt number `attempt` (1-based), or None when none is left."""
        return self.delays_ms[attempt - 1] if attempt <= len(self.delays_ms) else None


def retry_queue(queue: str, delay_ms: int) -> str:
    return f"{queue}.retry.{delay_ms}ms"


def parking_queue(queue: str) -> str:
    return f"{queue}.dlq"


def work_queue_arguments(queue: str, policy: RetryPolicy) -> dict[str, Any]:
    """Quorum for durability; past the delivery limit the broker dead-letters into the DLQ."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": policy.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": parking_queue(queue),
    }


def retry_queue_arguments(queue: str, delay_ms: int) -> dict[str, Any]:
    """Queue-level TTL: every message waits the same time, so none blocks the head of the queue."""
    return {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }


PARKING_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
