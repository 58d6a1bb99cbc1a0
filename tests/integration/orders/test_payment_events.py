"""Payment events move orders as the state machine says, once, and never get stuck."""

from __future__ import annotations

import pytest

from tests.integration.orders.conftest import new_user, parked
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


def types(rows) -> list[str]:
    return [row.type for row in rows]


async def test_payment_succeeded_makes_the_order_paid_and_emits_order_paid(orders, users):
    order = await orders.place(await new_user(users))
    succeeded = await orders.payment_event(
        "payment.succeeded",
        order["id"],
        amount_cents=order["total_cents"],
        currency="EUR",
        provider_payment_id="psp-1",
    )
    await orders.reaches(order["id"], "paid")
    outbox = await orders.outbox(order["id"])
    assert types(outbox) == ["order.created", "payment.requested", "order.paid"]
    paid = outbox[-1].payload
    assert paid["data"] == {
        "order_id": order["id"],
        "user_id": order["user_id"],
        "total_cents": order["total_cents"],
        "currency": "EUR",
        "payment_id": succeeded.data["payment_id"],
    }
    assert (paid["correlationid"], paid["causationid"]) == (succeeded.correlationid, succeeded.id)


async def test_payment_failed_ends_the_order_and_emits_order_cancelled_with_the_reason(
    orders, users
):
    order = await orders.place(await new_user(users))
    await orders.payment_event("payment.failed", order["id"], reason="card_declined")
    await orders.reaches(order["id"], "payment_failed")
    outbox = await orders.outbox(order["id"])
    assert types(outbox)[-1] == "order.cancelled"
    assert outbox[-1].payload["data"] == {
        "order_id": order["id"],
        "user_id": order["user_id"],
        "reason": "card_declined",
    }


async def test_payment_refunded_makes_a_paid_order_refunded_and_emits_order_refunded(orders, users):
    order = await orders.place(await new_user(users))
    await orders.payment_event("payment.succeeded", order["id"])
    await orders.reaches(order["id"], "paid")
    await orders.payment_event("payment.refunded", order["id"], amount_cents=1, currency="EUR")
    await orders.reaches(order["id"], "refunded")
    outbox = await orders.outbox(order["id"])
    assert types(outbox)[-1] == "order.refunded"
    assert outbox[-1].payload["data"] == {
        "order_id": order["id"],
        "user_id": order["user_id"],
        "total_cents": order["total_cents"],
        "currency": "EUR",
    }


async def duplicates_skipped(orders) -> float:
    """The orders consumer's count of redeliveries it acknowledged and skipped, from /metrics."""
    text = (await orders.http.get("/metrics")).text
    prefix = 'switchyard_inbox_duplicates_total{consumer="orders.payment-events"} '
    counts = [
        float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)
    ]
    return counts[0] if counts else 0.0


async def test_a_duplicate_event_changes_nothing(orders, users):
    order = await orders.place(await new_user(users))
    succeeded = await orders.payment_event("payment.succeeded", order["id"])
    await orders.reaches(order["id"], "paid")
    before = await duplicates_skipped(orders)
    await orders.publish(succeeded)  # redelivered: the same message id

    async def skipped() -> bool:
        return await duplicates_skipped(orders) > before

    await eventually(skipped, message="duplicate skipped")
    assert types(await orders.outbox(order["id"])).count("order.paid") == 1
    assert [h.outcome for h in await orders.history(order["id"])] == ["applied", "applied"]
    assert await orders.status(order["id"]) == "paid"


async def test_events_that_do_not_fit_the_state_are_recorded_and_ignored(
    orders, users, stack, names
):
    order = await orders.place(await new_user(users))
    order_id = order["id"]
    early_refund = await orders.payment_event("payment.refunded", order_id)
    await orders.handled(early_refund)
    assert await orders.status(order_id) == "pending_payment"

    paid = await orders.payment_event("payment.succeeded", order_id)
    await orders.reaches(order_id, "paid")
    late_failure = await orders.payment_event("payment.failed", order_id, reason="timeout")
    await orders.handled(late_failure)
    assert await orders.status(order_id) == "paid"

    history = await orders.history(order_id)
    assert [(h.event, h.outcome, h.from_status, h.to_status) for h in history] == [
        ("placed", "applied", None, "pending_payment"),
        ("payment.refunded", "ignored", "pending_payment", "pending_payment"),
        ("payment.succeeded", "applied", "pending_payment", "paid"),
        ("payment.failed", "ignored", "paid", "paid"),
    ]
    assert [h.message_id for h in history] == [None, early_refund.id, paid.id, late_failure.id]
    assert types(await orders.outbox(order_id)) == [
        "order.created",
        "payment.requested",
        "order.paid",
    ]
    assert await parked(stack.amqp_url, names) == 0


async def test_an_event_for_an_unknown_order_is_recorded_and_acknowledged(orders, stack, names):
    stray = await orders.payment_event("payment.succeeded", "00000000-0000-4000-8000-000000000000")
    await orders.handled(stray)
    [row] = await orders.history(stray.subject)
    assert (row.event, row.outcome, row.message_id) == (
        "payment.succeeded",
        "unknown_order",
        stray.id,
    )
    assert await orders.rows("SELECT 1 FROM orders.outbox") == []
    assert await parked(stack.amqp_url, names) == 0


async def test_cancel_then_payment_succeeded_requests_a_refund_and_stays_cancelled(
    orders, users, commands
):
    order = await orders.place(await new_user(users))
    order_id = order["id"]
    r = await orders.http.post(
        f"/api/v1/orders/{order_id}/cancel", headers={"X-Correlation-ID": "corr-cancel"}
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    again = await orders.http.post(f"/api/v1/orders/{order_id}/cancel")
    assert again.status_code == 409, again.text
    cancelled = (await orders.outbox(order_id))[-1].payload
    assert cancelled["type"] == "order.cancelled"
    assert cancelled["data"] == {
        "order_id": order_id,
        "user_id": order["user_id"],
        "reason": "cancelled_on_request",
    }
    assert (cancelled["correlationid"], cancelled.get("causationid")) == ("corr-cancel", None)

    succeeded = await orders.payment_event("payment.succeeded", order_id)
    await eventually(lambda: commands.of("payment.refund_requested", order_id))
    [refund] = commands.of("payment.refund_requested", order_id)
    assert refund.data == {"order_id": order_id, "reason": "order_cancelled"}
    assert (refund.correlationid, refund.causationid) == (succeeded.correlationid, succeeded.id)
    assert await orders.status(order_id) == "cancelled"

    # The refund completes: the order stays cancelled and owes no order.refunded.
    refunded = await orders.payment_event("payment.refunded", order_id)
    await orders.handled(refunded)
    assert await orders.status(order_id) == "cancelled"
    assert types(await orders.outbox(order_id)) == [
        "order.created",
        "payment.requested",
        "order.cancelled",
        "payment.refund_requested",
    ]
    history = await orders.history(order_id)
    assert [(h.event, h.outcome, h.from_status, h.to_status, h.message_id) for h in history] == [
        ("placed", "applied", None, "pending_payment", None),
        ("cancel", "applied", "pending_payment", "cancelled", None),
        ("payment.succeeded", "compensate", "cancelled", "cancelled", succeeded.id),
        ("payment.refunded", "compensated", "cancelled", "cancelled", refunded.id),
    ]


async def test_cancel_is_409_once_the_order_has_moved_on(orders, users):
    order = await orders.place(await new_user(users))
    await orders.payment_event("payment.succeeded", order["id"])
    await orders.reaches(order["id"], "paid")
    r = await orders.http.post(f"/api/v1/orders/{order['id']}/cancel")
    assert r.status_code == 409, r.text
    assert "paid" in r.json()["detail"]
    assert await orders.status(order["id"]) == "paid"
