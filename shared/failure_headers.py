"""Headers the broker adapters add when they retry or park a message: the same names on both.

Everything else a publisher sent travels along untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime

ATTEMPTS = "x-attempts"  # attempts so far (the handler ran this often)
ERROR_TYPE = "x-error-type"  # the exception's class name
ERROR_MESSAGE = "x-error-message"  # its text, cut to MAX_ERROR_MESSAGE characters
PARKED_AT = "x-parked-at"  # when it was parked, ISO 8601 in UTC: the dead letter's age
# Where the message came from: an exchange and routing key, or a topic, partition and offset.
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
ORIGINAL_QUEUE = "x-original-queue"
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"

MAX_ERROR_MESSAGE = 1000  # enough to diagnose without bloating the parked message


def error_headers(exc: BaseException) -> dict[str, str]:
    """Why and when a message was parked."""
    return {
        ERROR_TYPE: type(exc).__name__,
        ERROR_MESSAGE: str(exc)[:MAX_ERROR_MESSAGE],
        PARKED_AT: datetime.now(UTC).isoformat(),
    }
