"""What orders produces (its payload models, the contracts it offers) and its view of what it reads."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel

from shared.channels import Channel
from shared.messages import Produced, Reads

ORDERS_EVENTS = Channel.kafka("orders.events")
PAYMENTS_COMMANDS = "payments.commands"  # payments' direct exchange: routing key = command type
PAYMENTS_EVENTS = "payments.events"  # payments' topic exchange: routing key = event type
PAYMENT_EVENTS_QUEUE = "orders.payment-events"
USERS_EVENTS_TOPIC = "users.events"


class OrderMessage(Produced):
    """Every message of orders is about one order: its id is the subject and the record key."""

    SOURCE: ClassVar[str] = "switchyard/orders"
    SUBJECT: ClassVar[str] = "order_id"

    order_id: uuid.UUID


class LineItem(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderCreated(OrderMessage):
    TYPE = "order.created"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str
    items: list[LineItem]


class OrderPaid(OrderMessage):
    TYPE = "order.paid"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str
    payment_id: str


class OrderCancelled(OrderMessage):
    TYPE = "order.cancelled"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    reason: str


class OrderRefunded(OrderMessage):
    TYPE = "order.refunded"
    CHANNEL = ORDERS_EVENTS
    user_id: uuid.UUID
    total_cents: int
    currency: str


class PaymentRequested(OrderMessage):
    TYPE = "payment.requested"
    CHANNEL = Channel.rabbit(PAYMENTS_COMMANDS, "payment.requested")
    user_id: uuid.UUID
    amount_cents: int
    currency: str


class PaymentRefundRequested(OrderMessage):
    TYPE = "payment.refund_requested"
    CHANNEL = Channel.rabbit(PAYMENTS_COMMANDS, "payment.refund_requested")
    reason: str


PRODUCED = (
    OrderCreated,
    OrderPaid,
    OrderCancelled,
    OrderRefunded,
    PaymentRequested,
    PaymentRefundRequested,
)


# Consumed: orders' own minimal view of what it reads.
class PaymentSucceeded(Reads):
    order_id: uuid.UUID
    payment_id: str


class PaymentFailed(Reads):
    order_id: uuid.UUID
    reason: str


class PaymentRefunded(Reads):
    order_id: uuid.UUID


class UserDeleted(Reads):
    user_id: uuid.UUID
