"""Provider webhooks against the real service: applied once, kept until the command, never 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from shared.webhooks import signed_headers
from tests.integration.payments.conftest import (
    SECRET,
    PaymentsService,
    event_body,
    running_payments,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


def new_order() -> str:
    return str(uuid.uuid4())


async def requested(payments: PaymentsService, order_id: str, **kw):
    """Send `payment.requested` and wait until payments has the payment."""
    command = await payments.request_payment(order_id, **kw)
    await eventually(lambda: payments.payment(order_id), message="payment created")
    return command


async def test_command_then_success_webhook_pays_and_publishes_succeeded(payments):
    order_id = new_order()
    command = await requested(payments, order_id)
    assert await payments.status(order_id) == "awaiting_confirmation"

    r = await payments.webhook(
        "payment.succeeded", order_id, provider_payment_id="psp_1", msg_id="msg_ok"
    )

    assert r.status_code == 200, r.text
    assert r.json() == {"webhook_id": "msg_ok", "outcome": "applied"}
    payment = await payments.payment(order_id)
    assert (payment.status, payment.provider_payment_id) == ("succeeded", "psp_1")
    [webhook] = await payments.rows("SELECT * FROM payments.webhooks")
    assert (webhook.webhook_id, webhook.state, webhook.order_id) == (
        "msg_ok",
        "applied",
        payment.order_id,
    )
    assert webhook.processed_at is not None
    [published] = await eventually(lambda: payments.published(order_id))
    assert (published.routing_key, published.content_type) == (
        "payment.succeeded",
        "application/cloudevents+json",
    )
    event = published.envelope
    assert event.data == {
        "payment_id": str(payment.id),
        "order_id": order_id,
        "amount_cents": 4200,
        "currency": "EUR",
        "provider_payment_id": "psp_1",
    }
    assert (event.subject, event.source) == (order_id, "switchyard/payments")
    # Caused by a webhook, yet followed with the order: the command's correlation id.
    assert (event.correlationid, event.causationid) == (command.correlationid, "msg_ok")


async def test_webhook_before_command_is_kept_then_applied_when_the_command_arrives(payments):
    order_id = new_order()

    r = await payments.webhook("payment.succeeded", order_id, msg_id="msg_early")

    assert r.status_code == 202, r.text
    assert r.json()["outcome"] == "pending"
    assert await payments.payment(order_id) is None
    [webhook] = await payments.rows("SELECT * FROM payments.webhooks")
    assert (webhook.state, webhook.type) == ("pending", "payment.succeeded")
    assert await payments.owed(order_id) == []

    command = await payments.request_payment(order_id)

    await eventually(lambda: payments.status(order_id), message="payment created")
    assert await payments.status(order_id) == "succeeded"
    [webhook] = await payments.rows("SELECT * FROM payments.webhooks")
    assert webhook.state == "applied"
    [published] = await eventually(lambda: payments.published(order_id))
    assert published.type == "payment.succeeded"
    assert published.envelope.correlationid == command.correlationid
    assert published.envelope.causationid == command.id


async def test_pending_webhooks_apply_in_the_order_received(payments):
    order_id = new_order()
    assert (await payments.webhook("payment.succeeded", order_id)).status_code == 202
    assert (await payments.webhook("payment.refunded", order_id)).status_code == 202

    await payments.request_payment(order_id)

    await eventually(lambda: payments.status(order_id), message="payment created")
    assert await payments.status(order_id) == "refunded"
    assert await payments.owed(order_id) == ["payment.succeeded", "payment.refunded"]


async def test_failed_webhook_fails_the_payment_with_the_providers_reason(payments):
    order_id = new_order()
    command = await requested(payments, order_id)

    r = await payments.webhook(
        "payment.failed", order_id, failure_reason="card declined", msg_id="msg_declined"
    )

    assert (r.status_code, r.json()["outcome"]) == (200, "applied")
    payment = await payments.payment(order_id)
    assert (payment.status, payment.failure_reason) == ("failed", "card declined")
    [published] = await eventually(lambda: payments.published(order_id))
    assert published.type == "payment.failed"
    assert published.envelope.data == {
        "payment_id": str(payment.id),
        "order_id": order_id,
        "reason": "card declined",
    }
    assert published.routing_key == "payment.failed"
    assert (published.envelope.correlationid, published.envelope.causationid) == (
        command.correlationid,
        "msg_declined",
    )


@pytest.mark.parametrize(
    ("amount_cents", "currency"), [(4100, "EUR"), (4200, "USD")], ids=["amount", "currency"]
)
async def test_success_for_another_amount_or_currency_is_a_mismatch(
    payments, amount_cents, currency
):
    order_id = new_order()
    command = await requested(payments, order_id, amount_cents=4200, currency="EUR")

    r = await payments.webhook(
        "payment.succeeded", order_id, amount_cents, currency, msg_id="msg_mismatch"
    )

    assert (r.status_code, r.json()["outcome"]) == (200, "applied")
    payment = await payments.payment(order_id)
    assert payment.status == "amount_mismatch"
    assert f"provider reported {amount_cents} {currency}" in payment.failure_reason
    # Never a payment.succeeded: orders learns it was not paid, with a reason it can tell apart.
    assert await payments.owed(order_id) == ["payment.failed"]
    [published] = await eventually(lambda: payments.published(order_id))
    assert published.routing_key == "payment.failed"
    assert published.envelope.data == {
        "payment_id": str(payment.id),
        "order_id": order_id,
        "reason": "amount_mismatch",
    }
    assert (published.envelope.correlationid, published.envelope.causationid) == (
        command.correlationid,
        "msg_mismatch",
    )


async def test_repeated_webhook_id_is_answered_2xx_and_changes_nothing(payments):
    order_id = new_order()
    await requested(payments, order_id)
    body = event_body("payment.succeeded", order_id)
    headers = signed_headers(SECRET, body, msg_id="msg_twice")

    first = await payments.post_webhook(body, headers)
    before = await payments.counts()
    second = await payments.post_webhook(body, headers)

    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    assert await payments.counts() == before
    assert await payments.owed(order_id) == ["payment.succeeded"]


async def test_concurrent_duplicate_webhooks_have_one_effect(payments):
    order_id = new_order()
    await requested(payments, order_id)
    body = event_body("payment.succeeded", order_id)
    headers = signed_headers(SECRET, body, msg_id="msg_race")

    answers = await asyncio.gather(*(payments.post_webhook(body, headers) for _ in range(8)))

    assert [r.status_code for r in answers] == [200] * 8
    assert sorted(r.json()["outcome"] for r in answers) == ["applied"] + ["duplicate"] * 7
    assert await payments.owed(order_id) == ["payment.succeeded"]
    assert len(await payments.rows("SELECT * FROM payments.webhooks")) == 1


async def test_concurrent_success_reports_with_different_ids_apply_once(payments):
    order_id = new_order()
    await requested(payments, order_id)

    answers = await asyncio.gather(
        *(payments.webhook("payment.succeeded", order_id) for _ in range(5))
    )

    assert [r.status_code for r in answers] == [200] * 5
    assert sorted(r.json()["outcome"] for r in answers) == ["applied"] + ["ignored"] * 4
    assert await payments.owed(order_id) == ["payment.succeeded"]


async def test_a_report_that_does_not_fit_is_recorded_and_ignored(payments):
    order_id = new_order()
    await requested(payments, order_id)
    failed = await payments.webhook("payment.failed", order_id)
    assert (failed.status_code, failed.json()["outcome"]) == (200, "applied")

    r = await payments.webhook("payment.succeeded", order_id, msg_id="msg_late")

    assert (r.status_code, r.json()["outcome"]) == (200, "ignored")
    assert await payments.status(order_id) == "failed"
    [late] = await payments.rows("SELECT * FROM payments.webhooks WHERE webhook_id = 'msg_late'")
    assert late.state == "ignored"
    assert "payment is failed" in late.outcome
    assert await payments.owed(order_id) == ["payment.failed"]


async def test_refund_requested_then_refunded_webhook(payments):
    order_id = new_order()
    await requested(payments, order_id)
    paid = await payments.webhook("payment.succeeded", order_id)
    assert (paid.status_code, paid.json()["outcome"]) == (200, "applied")

    await payments.command(
        "payment.refund_requested", {"order_id": order_id, "reason": "cancelled"}
    )

    async def refund_pending() -> bool:
        return await payments.status(order_id) == "refund_pending"

    await eventually(refund_pending)
    r = await payments.webhook("payment.refunded", order_id)

    assert (r.status_code, r.json()["outcome"]) == (200, "applied")
    assert await payments.status(order_id) == "refunded"
    assert await payments.owed(order_id) == ["payment.succeeded", "payment.refunded"]
    published = await eventually(lambda: payments.published(order_id)[1:])
    payment = await payments.payment(order_id)
    assert published[0].envelope.data == {
        "payment_id": str(payment.id),
        "order_id": order_id,
        "amount_cents": 4200,
        "currency": "EUR",
    }


async def test_refunded_webhook_refunds_a_succeeded_payment_directly(payments):
    order_id = new_order()
    await requested(payments, order_id)
    paid = await payments.webhook("payment.succeeded", order_id)
    assert (paid.status_code, paid.json()["outcome"]) == (200, "applied")

    r = await payments.webhook("payment.refunded", order_id)

    assert (r.status_code, r.json()["outcome"]) == (200, "applied")
    assert await payments.status(order_id) == "refunded"
    assert await payments.owed(order_id) == ["payment.succeeded", "payment.refunded"]


@pytest.fixture
async def roomy_payments(stack, database, names) -> AsyncIterator[PaymentsService]:
    """Payments with a connection for every request the next test holds up at once."""
    async with running_payments(stack, database, names, db_pool_size=50) as service:
        yield service


async def test_webhooks_and_commands_in_flight_together_still_meet(roomy_payments, database):
    payments = roomy_payments
    orders = [new_order() for _ in range(20)]
    # Hold every command and webhook at its first touch of these tables, then let all go at
    # once: neither side may miss the other's uncommitted row (a webhook pending forever).
    async with payments.db.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(
            sa.text("LOCK TABLE payments.payments, payments.webhooks IN ACCESS EXCLUSIVE MODE")
        )
        webhooks = [asyncio.create_task(payments.webhook("payment.succeeded", o)) for o in orders]
        for order_id in orders:
            await payments.request_payment(order_id)
        await eventually(lambda: waiting_on_locks(payments, database.name, 2 * len(orders)))
        await transaction.rollback()

    # Each met its command (applied) or came first and was kept (pending, applied later).
    answers = {((await w).status_code, (await w).json()["outcome"]) for w in webhooks}
    assert answers <= {(200, "applied"), (202, "pending")}, answers

    async def all_succeeded() -> bool:
        rows = await payments.rows("SELECT status FROM payments.payments")
        return len(rows) == len(orders) and {r.status for r in rows} == {"succeeded"}

    await eventually(all_succeeded, message="every payment succeeded")
    assert await payments.rows("SELECT 1 FROM payments.webhooks WHERE state <> 'applied'") == []
    assert (await payments.counts())["outbox"] == len(orders)


async def waiting_on_locks(payments: PaymentsService, database: str, count: int) -> bool:
    rows = await payments.rows(
        "SELECT 1 FROM pg_stat_activity"
        " WHERE datname = :d AND usename = 'payments_service' AND wait_event_type = 'Lock'",
        d=database,
    )
    return len(rows) == count
