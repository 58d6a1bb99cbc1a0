"""What `shared.outbox.in_turn` makes of the messages a write owes (envelopes, causes, channels),
and the row they are filled from (`shared.db.as_updated`)."""

from __future__ import annotations

import uuid

import pytest

from orders.messages import OrderPaid
from payments.messages import PaymentFailed, PaymentSucceeded
from shared.db import as_updated
from shared.outbox import in_turn

pytestmark = pytest.mark.unit

PAYMENT, ORDER = str(uuid.uuid4()), uuid.uuid4()


def succeeded() -> PaymentSucceeded:
    return PaymentSucceeded(payment_id=PAYMENT, order_id=ORDER, amount_cents=700,
                            currency="EUR", provider_payment_id="psp-1")  # fmt: skip


def test_a_message_caused_by_a_message_continues_its_correlation():
    cause = succeeded().envelope(correlation_id="order-7")
    paid = OrderPaid(order_id=ORDER, user_id=uuid.uuid4(), total_cents=700, currency="EUR",
                     payment_id=PAYMENT)  # fmt: skip

    [(channel, envelope)] = in_turn(paid, caused_by=cause)

    assert channel == OrderPaid.CHANNEL
    assert (envelope.type, envelope.subject) == ("order.paid", str(ORDER))
    assert (envelope.correlationid, envelope.causationid) == ("order-7", cause.id)


def test_a_message_caused_by_a_webhook_names_it_and_keeps_the_orders_correlation():
    failed = PaymentFailed(payment_id=PAYMENT, order_id=ORDER, reason="card_declined")

    [(channel, envelope)] = in_turn(failed, correlation_id="order-7", causation_id="msg_1")

    assert channel == PaymentFailed.CHANNEL
    assert envelope.data == {
        "payment_id": PAYMENT,
        "order_id": str(ORDER),
        "reason": "card_declined",
    }
    assert (envelope.correlationid, envelope.causationid) == ("order-7", "msg_1")


def test_each_later_message_is_caused_by_the_one_before():
    first, second = in_turn(succeeded(), succeeded(), correlation_id="request-1")

    assert first.envelope.correlationid == second.envelope.correlationid == "request-1"
    assert first.envelope.causationid is None
    assert second.envelope.causationid == first.envelope.id


class _Row:
    def _asdict(self) -> dict[str, object]:
        return {"id": PAYMENT, "status": "awaiting_confirmation", "provider_payment_id": None}


def test_a_row_as_updated_reads_the_changes_over_what_it_held():
    moved = as_updated(_Row(), status="succeeded", provider_payment_id="psp-1")

    assert (moved.id, moved.status, moved.provider_payment_id) == (PAYMENT, "succeeded", "psp-1")
