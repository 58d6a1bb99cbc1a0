"""What orders publishes (payload models and envelope builders) and its own view of what it reads."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from shared.channels import Channel
from shared.envelope import Envelope, new_envelope

SOURCE = "switchyard/orders"
ORDERS_EVENTS = Channel.kafka("orders.events")
PAYMENTS_COMMANDS = "payments.commands"  # direct exchange; payments binds its queue to it
PAYMENTS_EVENTS = "payments.events"  # topic exchange of payments' events
PAYMENT_EVENTS_QUEUE = "orders.payment-events"
USERS_EVENTS_TOPIC = "users.events"


# Produced: each model is the contract orders offers; the subject (and record key) is the order id.
class Produced(BaseModel):
    TYPE: ClassVar[str]
    CHANNEL: ClassVar[Channel]

    order_id: uuid.UUID


class LineItem(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderCreated(Produced):
    TYPE = "order.created"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str
    items: list[LineItem]


class OrderPaid(Produced):
    TYPE = "order.paid"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str
    payment_id: str


class OrderCancelled(Produced):
    TYPE = "order.cancelled"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    reason: str


class OrderRefunded(Produced):
    TYPE = "order.refunded"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str


class PaymentRequested(Produced):
    TYPE = "payment.requested"
    CHANNEL = Channel.rabbit(PAYMENTS_COMMANDS, "payment.requested")
    user_id: uuid.UUID
    amount_cents: int
    currency: str


class PaymentRefundRequested(Produced):
    TYPE = "payment.refund_requested"
    CHANNEL = Channel.rabbit(PAYMENTS_COMMANDS, "payment.refund_requested")
    reason: str


def order_message(
    payload: Produced, *, caused_by: Envelope | None = None, correlation_id: str | None = None
) -> Envelope:
    """The envelope for an event or command of orders; its subject is the order id."""
    data = payload.model_dump(mode="json")
    return new_envelope(
        type=payload.TYPE,
        source=SOURCE,
        subject=data["order_id"],
        data=data,
        caused_by=caused_by,
        correlation_id=correlation_id,
    )


# Consumed: orders' own minimal view of the messages it reads; unknown fields are ignored.
class _Reads(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PaymentSucceeded(_Reads):
    order_id: uuid.UUID
    payment_id: str


class PaymentFailed(_Reads):
    order_id: uuid.UUID
    reason: str


class PaymentRefunded(_Reads):
    order_id: uuid.UUID


class UserDeleted(_Reads):
    user_id: uuid.UUID
