"""One parked message as an operator sees it: what it is, why it was parked, where it came from."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared import failure_headers as fh

# Headers that say why and when a message was parked. A replay drops them: the message starts
# afresh (its attempts would otherwise leave it no retry at all), and if it fails again it is
# parked with the new reason, not a stale one.
FAILURE_HEADERS = frozenset(
    {fh.ATTEMPTS, fh.ERROR_TYPE, fh.ERROR_MESSAGE, fh.PARKED_AT, fh.ORIGINAL_QUEUE}
)
# Where a Kafka record was: the replay goes back there, so they say nothing any more.
KAFKA_ORIGIN_HEADERS = frozenset({fh.ORIGINAL_TOPIC, fh.ORIGINAL_PARTITION, fh.ORIGINAL_OFFSET})


@dataclass
class DeadLetter:
    """A message in a RabbitMQ `.dlq` or a Kafka `.dlt`; names are logical (no prefix)."""

    id: str  # the message id (CloudEvents id); a hash of the body if it has none
    broker: Literal["rabbit", "kafka"]
    parked_in: str  # the .dlq queue, or `<topic>.dlt[partition]@offset`
    origin: str  # the work queue, or `<topic>[partition]@offset`
    reason: str
    attempts: int | None
    parked_at: datetime | None
    headers: dict[str, Any]
    body: bytes
    key: bytes | None = None  # Kafka's record key
    handle: Any = field(default=None, repr=False, compare=False)  # the broker's own object

    def age(self, now: datetime | None = None) -> float | None:
        """Seconds since it was parked, if that is known."""
        if self.parked_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.parked_at).total_seconds()

    def summary(self) -> dict[str, Any]:
        """The fields `dlq list --json` prints."""
        return {
            "id": self.id,
            "broker": self.broker,
            "parked_in": self.parked_in,
            "origin": self.origin,
            "reason": self.reason,
            "attempts": self.attempts,
            "parked_at": self.parked_at.isoformat() if self.parked_at else None,
            "age_seconds": self.age(),
        }

    def full(self) -> dict[str, Any]:
        """Everything `dlq show` prints: the summary, the headers and the body."""
        return {
            **self.summary(),
            "key": _text(self.key) if self.key is not None else None,
            "headers": {name: _plain(value) for name, value in self.headers.items()},
            "body": _body(self.body),
        }


def readable_age(seconds: float | None) -> str:
    """An age as an operator reads it: 42.0s, 3.5m, 1.2h, 2.0d; "?" when it is not known."""
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def message_id(declared: str | None, body: bytes) -> str:
    """The id the producer gave, else the CloudEvents id in the body, else a hash of the body."""
    if declared:
        return declared
    try:
        found = json.loads(body).get("id")
    except (ValueError, AttributeError):
        found = None
    if isinstance(found, str) and found:
        return found
    return "sha256:" + hashlib.sha256(body).hexdigest()[:16]


def reason(headers: dict[str, Any]) -> str:
    """Why it was parked: the adapter's error, else the broker's own dead-letter reason."""
    if fh.ERROR_TYPE in headers:
        return f"{_text(headers[fh.ERROR_TYPE])}: {_text(headers.get(fh.ERROR_MESSAGE, ''))}"
    deaths = headers.get("x-death") or []
    if deaths:
        return f"broker: {_text(deaths[0].get('reason', 'unknown'))}"
    return "unknown"


def attempts(headers: dict[str, Any]) -> int | None:
    try:
        return int(_text(headers[fh.ATTEMPTS]))
    except (KeyError, TypeError, ValueError):
        return None


def parked_at(headers: dict[str, Any], fallback: datetime | None) -> datetime | None:
    """When the adapter parked it, else when the broker did, else `fallback`."""
    try:
        return datetime.fromisoformat(_text(headers[fh.PARKED_AT]))
    except (KeyError, TypeError, ValueError):
        pass
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0].get("time"), datetime):
        return _utc(deaths[0]["time"])
    return _utc(fallback) if fallback else None


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _plain(value: Any) -> Any:
    """A header value as JSON can hold it (RabbitMQ's x-death is a list of tables)."""
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _body(body: bytes) -> Any:
    """The body as JSON if it is JSON, as text if it is text, else base64."""
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode()}
