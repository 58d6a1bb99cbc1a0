"""CloudEvents 1.0 envelope in structured JSON mode, shared by every channel of every service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import MalformedMessage

CONTENT_TYPE = "application/cloudevents+json"


class Envelope(BaseModel):
    """One event or command: CloudEvents attributes plus correlation and causation extensions."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str = Field(min_length=1)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    correlationid: str = Field(min_length=1)
    causationid: str | None = None


def new_envelope(
    *,
    type: str,
    source: str,
    subject: str,
    data: dict[str, Any],
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Build an envelope; one caused by another inherits its correlation id."""
    event_id = str(uuid.uuid4())
    if caused_by is not None:
        correlation_id = caused_by.correlationid
    return Envelope(
        id=event_id,
        source=source,
        type=type,
        time=datetime.now(UTC),
        subject=subject,
        data=data,
        correlationid=correlation_id or event_id,
        causationid=caused_by.id if caused_by is not None else None,
    )


def encode(envelope: Envelope) -> bytes:
    """Structured-mode JSON body."""
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(body: bytes) -> Envelope:
    """Parse a structured-mode body; anything unreadable raises MalformedMessage."""
    try:
        return Envelope.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        raise MalformedMessage(f"not a CloudEvents 1.0 envelope: {exc}") from exc
