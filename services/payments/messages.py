"""What payments produces (its payload models, the contracts it offers) and its view of what it reads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from shared.channels import Channel
from shared.messages import Produced, Reads

PAYMENTS_EVENTS_EXCHANGE = "payments.events"  # topic: routing key = event type
PAYMENTS_COMMANDS_EXCHANGE = "payments.commands"  # direct: routing key = command type
PAYMENT_REQUESTS_QUEUE = "payments.payment-requests"

Cents = Annotated[int, Field(ge=0, le=2**63 - 1)]  # the column is a bigint
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]  # ISO 4217, compared exactly
# Postgres text cannot hold NUL: refusing it here keeps bad input a 4xx, not a database error.
Text = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]


class PaymentMessage(Produced):
    """Every event of payments is about one order's payment: the order id is the subject."""

    SOURCE: ClassVar[str] = "switchyard/payments"
    SUBJECT: ClassVar[str] = "order_id"

    payment_id: uuid.UUID
    order_id: uuid.UUID


# On `payments.events`, routed by type; orders consumes them.
class PaymentSucceeded(PaymentMessage):
    TYPE = "payment.succeeded"
    CHANNEL = Channel.rabbit(PAYMENTS_EVENTS_EXCHANGE, TYPE)
    amount_cents: int
    currency: str
    provider_payment_id: str


class PaymentFailed(PaymentMessage):
    TYPE = "payment.failed"
    CHANNEL = Channel.rabbit(PAYMENTS_EVENTS_EXCHANGE, TYPE)
    reason: str


class PaymentRefunded(PaymentMessage):
    TYPE = "payment.refunded"
    CHANNEL = Channel.rabbit(PAYMENTS_EVENTS_EXCHANGE, TYPE)
    amount_cents: int
    currency: str


PRODUCED = (PaymentSucceeded, PaymentFailed, PaymentRefunded)


# Consumed: payments' own minimal view of the commands orders sends.
class PaymentRequested(Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: Cents
    currency: Currency


class RefundRequested(Reads):
    order_id: uuid.UUID
    reason: str | None = None


# Read from the payment provider over HTTP (POST /webhooks/psp), after its signature is checked.
class ProviderPayment(Reads):
    model_config = ConfigDict(extra="ignore", strict=True)
    order_id: uuid.UUID
    amount_cents: Cents
    currency: Currency
    provider_payment_id: Text
    failure_reason: Text | None = None


class ProviderEvent(Reads):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["payment.succeeded", "payment.failed", "payment.refunded"]
    timestamp: datetime
    data: ProviderPayment
