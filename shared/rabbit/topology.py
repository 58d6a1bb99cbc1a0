"""Queue names and arguments: quorum work queue, one delayed retry queue per tier, parking queue."""

from __future__ import annotations

from typing import Any

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
# Redeliveries (consumer died, channel closed) before the broker itself parks a message: one
# that kills every consumer that takes it must not circulate forever.
DELIVERY_LIMIT = 20


def ttl_ms(delay: float) -> int:
    """A retry delay in seconds as the milliseconds RabbitMQ counts a queue's TTL in."""
    return round(delay * 1000)


def retry_queue(queue: str, delay: float) -> str:
    """The queue a message of `queue` waits `delay` seconds in before it is tried again."""
    return f"{queue}.retry.{ttl_ms(delay)}ms"


def parking_queue(queue: str) -> str:
    return f"{queue}.dlq"


def work_queue_arguments(queue: str, delivery_limit: int) -> dict[str, Any]:
    """Quorum for durability; past the delivery limit the broker dead-letters into the DLQ.

    A quorum queue dead-letters at most once by default: a message it parks while the DLQ
    cannot take it is dropped. At least once keeps it until the DLQ confirmed, and RabbitMQ
    allows that only with reject-publish: a full queue then nacks new publishes (the publisher
    sees a failed publish and tries again) instead of dropping its oldest messages.
    """
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": parking_queue(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(queue: str, delay: float) -> dict[str, Any]:
    """Queue-level TTL: every message waits the same time, so none blocks the head of the queue.

    Quorum like the work queue (TTL needs RabbitMQ 3.10): a classic queue lives on one node of a
    cluster, and while that node is down nothing can declare it, so no client could reconnect.
    Its expired messages go back at least once, as the work queue's parked ones do.
    """
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": ttl_ms(delay),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


PARKING_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
