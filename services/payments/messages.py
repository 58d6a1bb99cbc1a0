"""What payments publishes (payload models and event builders) and its own view of what it reads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.channels import Channel
from shared.envelope import Envelope, new_envelope

SOURCE = "switchyard/payments"
PAYMENTS_EVENTS_EXCHANGE = "payments.events"  # topic: routing key = event type
PAYMENTS_COMMANDS_EXCHANGE = "payments.commands"  # direct: routing key = command type
PAYMENT_REQUESTS_QUEUE = "payments.payment-requests"

Cents = Annotated[int, Field(ge=0, le=2**63 - 1)]  # the column is a bigint
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]  # ISO 4217, compared exactly
# Postgres text cannot hold NUL: refusing it here keeps bad input a 4xx, not a database error.
Text = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]


# Produced on `payments.events` (routing key = type, subject = order id); orders consumes them.
class PaymentSucceeded(BaseModel):
    TYPE: ClassVar[str] = "payment.succeeded"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    amount_cents: int
    currency: str
    provider_payment_id: str


class PaymentFailed(BaseModel):
    TYPE: ClassVar[str] = "payment.failed"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    reason: str


class PaymentRefunded(BaseModel):
    TYPE: ClassVar[str] = "payment.refunded"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    amount_cents: int
    currency: str


PaymentEvent = PaymentSucceeded | PaymentFailed | PaymentRefunded


def payment_channel(type: str) -> Channel:
    """Where a payment event goes: the events exchange, routed by its type."""
    return Channel.rabbit(PAYMENTS_EVENTS_EXCHANGE, type)


def payment_event(
    payload: PaymentEvent,
    *,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """The envelope for a payment event; the subject (and so the key) is the order id."""
    data = payload.model_dump(mode="json")
    envelope = new_envelope(
        type=payload.TYPE,
        source=SOURCE,
        subject=data["order_id"],
        data=data,
        caused_by=caused_by,
        correlation_id=correlation_id,
    )
    if causation_id is not None and caused_by is None:  # a webhook: caused by its webhook-id
        envelope = envelope.model_copy(update={"causationid": causation_id})
    return envelope


# Consumed: payments' own minimal view of the commands orders sends; unknown fields are ignored.
class _Reads(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PaymentRequested(_Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: Cents
    currency: Currency


class RefundRequested(_Reads):
    order_id: uuid.UUID
    reason: str | None = None


# Read from the payment provider over HTTP (POST /webhooks/psp), after its signature is checked.
class ProviderPayment(_Reads):
    model_config = ConfigDict(extra="ignore", strict=True)
    order_id: uuid.UUID
    amount_cents: Cents
    currency: Currency
    provider_payment_id: Text
    failure_reason: Text | None = None


class ProviderEvent(_Reads):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["payment.succeeded", "payment.failed", "payment.refunded"]
    timestamp: datetime
    data: ProviderPayment
