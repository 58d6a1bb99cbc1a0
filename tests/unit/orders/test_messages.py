"""The envelopes orders builds: type, subject, channel and causation of each message."""

from __future__ import annotations

import uuid

import pytest

from orders.messages import (
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
    PaymentRefundRequested,
    PaymentRequested,
)
from shared.channels import Channel
from shared.envelope import new_envelope

pytestmark = pytest.mark.unit

ORDER, USER = uuid.uuid4(), uuid.uuid4()
ORDERS_EVENTS = Channel.kafka("orders.events")

PAYLOADS = [
    (
        "order.created",
        OrderCreated(
            order_id=ORDER,
            user_id=USER,
            total_cents=300,
            currency="EUR",
            items=[{"sku": "a", "quantity": 3, "unit_price_cents": 100}],
        ),
        ORDERS_EVENTS,
        {"order_id", "user_id", "total_cents", "currency", "items"},
    ),
    (
        "order.paid",
        OrderPaid(
            order_id=ORDER, user_id=USER, total_cents=300, currency="EUR", payment_id="pay-1"
        ),
        ORDERS_EVENTS,
        {"order_id", "user_id", "total_cents", "currency", "payment_id"},
    ),
    (
        "order.cancelled",
        OrderCancelled(order_id=ORDER, user_id=USER, reason="user_deleted"),
        ORDERS_EVENTS,
        {"order_id", "user_id", "reason"},
    ),
    (
        "order.refunded",
        OrderRefunded(order_id=ORDER, user_id=USER, total_cents=300, currency="EUR"),
        ORDERS_EVENTS,
        {"order_id", "user_id", "total_cents", "currency"},
    ),
    (
        "payment.requested",
        PaymentRequested(order_id=ORDER, user_id=USER, amount_cents=300, currency="EUR"),
        Channel.rabbit("payments.commands", "payment.requested"),
        {"order_id", "user_id", "amount_cents", "currency"},
    ),
    (
        "payment.refund_requested",
        PaymentRefundRequested(order_id=ORDER, reason="order_cancelled"),
        Channel.rabbit("payments.commands", "payment.refund_requested"),
        {"order_id", "reason"},
    ),
]


@pytest.mark.parametrize(
    ("type", "payload", "channel", "fields"), PAYLOADS, ids=[p[0] for p in PAYLOADS]
)
def test_message_goes_to_its_channel_with_the_catalogued_fields(type, payload, channel, fields):
    envelope = payload.envelope(correlation_id="corr-1")
    assert channel == payload.CHANNEL
    assert envelope.type == type
    assert envelope.subject == str(ORDER)
    assert envelope.source == "switchyard/orders"
    assert set(envelope.data) == fields
    assert envelope.data["order_id"] == str(ORDER)
    assert envelope.correlationid == "corr-1"
    assert envelope.causationid is None


def test_message_caused_by_another_carries_its_correlation_and_causation():
    cause = new_envelope(
        type="payment.succeeded", source="payments", subject=str(ORDER), data={}, correlation_id="c"
    )
    envelope = PaymentRefundRequested(order_id=ORDER, reason="x").envelope(caused_by=cause)
    assert (envelope.correlationid, envelope.causationid) == ("c", cause.id)
