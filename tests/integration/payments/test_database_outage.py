"""Webhooks while the database is out of reach: 503, nothing half-applied, the retry applied once."""

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


@pytest.fixture
async def payments(stack, database, names, database_proxy) -> AsyncIterator[PaymentsService]:
    """Payments reaching its database only through the proxy; the test inspects it directly."""
    url = database_proxy.carrying(database.url("payments"))
    async with running_payments(stack, database, names, database_url=url) as service:
        yield service


async def awaiting_payment(payments: PaymentsService) -> str:
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id), message="payment created")
    return order_id


async def test_unreachable_database_gives_503_then_the_retry_applies_once(payments, database_proxy):
    order_id = await awaiting_payment(payments)
    body = event_body("payment.succeeded", order_id)
    headers = signed_headers(SECRET, body, msg_id="msg_outage")
    before = await payments.counts()

    database_proxy.cut()
    refused = await payments.post_webhook(body, headers)
    ready = await payments.http.get("/readyz")

    assert refused.status_code == 503, refused.text
    assert ready.status_code == 503
    assert await payments.counts() == before
    assert await payments.status(order_id) == "awaiting_confirmation"

    database_proxy.restore()
    retried = await payments.post_webhook(body, headers)
    again = await payments.post_webhook(body, headers)

    assert (retried.status_code, retried.json()["outcome"]) == (200, "applied")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert await payments.status(order_id) == "succeeded"
    assert await payments.owed(order_id) == ["payment.succeeded"]
    [published] = await eventually(lambda: payments.published(order_id))
    assert published.type == "payment.succeeded"


async def test_bad_input_is_still_422_while_the_database_is_down(payments, database_proxy):
    """A request is validated before it asks for a connection."""
    database_proxy.cut()
    for path in ("/api/v1/payments/not-a-uuid", "/api/v1/payments?order_id=42"):
        response = await payments.http.get(path)
        assert response.status_code == 422, (path, response.text)
    # The database really is out of reach: good input is 503.
    assert (await payments.http.get(f"/api/v1/payments/{uuid.uuid4()}")).status_code == 503


async def test_connection_lost_mid_transaction_leaves_nothing_half_applied(
    payments, database_proxy, database
):
    order_id = await awaiting_payment(payments)
    body = event_body("payment.succeeded", order_id)
    headers = signed_headers(SECRET, body, msg_id="msg_mid_flight")
    before = await payments.counts()

    # Hold the payment row, so the webhook's transaction stops at its UPDATE: the webhook row
    # is already written, the payment not yet, and the outbox row not yet.
    async with payments.db.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(
            sa.text("SELECT 1 FROM payments.payments WHERE order_id = :o FOR UPDATE"),
            {"o": order_id},
        )
        request = asyncio.create_task(payments.post_webhook(body, headers))
        await eventually(lambda: blocked_on_lock(payments, database.name), message="webhook waits")
        database_proxy.cut()
        refused = await request
        await transaction.rollback()

    assert refused.status_code == 503, refused.text
    database_proxy.restore()
    retried = await payments.post_webhook(body, headers)

    # "applied", not "duplicate": the first attempt's webhook row was rolled back with the rest.
    assert (retried.status_code, retried.json()["outcome"]) == (200, "applied")
    after = await payments.counts()
    assert after == before | {"webhooks": before["webhooks"] + 1, "outbox": before["outbox"] + 1}
    assert await payments.status(order_id) == "succeeded"
    assert await payments.owed(order_id) == ["payment.succeeded"]


async def blocked_on_lock(payments: PaymentsService, database: str) -> bool:
    rows = await payments.rows(
        "SELECT 1 FROM pg_stat_activity"
        " WHERE datname = :d AND usename = 'payments_service' AND wait_event_type = 'Lock'",
        d=database,
    )
    return bool(rows)
