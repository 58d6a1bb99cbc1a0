"""The read API and the operations endpoints of payments, over real HTTP."""

from __future__ import annotations

import uuid

import pytest

from payments.messages import PAYMENT_REQUESTS_QUEUE
from tests.support.eventually import eventually
from tests.support.metrics import sample

pytestmark = pytest.mark.integration

WEBHOOKS = "switchyard_webhooks_total"


async def test_payment_by_id_and_by_order(payments):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id, amount_cents=1999, currency="SEK")
    await eventually(lambda: payments.payment(order_id))
    other = str(uuid.uuid4())
    await payments.request_payment(other)
    await eventually(lambda: payments.payment(other))

    page = await payments.http.get("/api/v1/payments", params={"order_id": order_id})

    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["total"], body["page"], body["pages"]) == (1, 1, 1)
    [listed] = body["items"]
    assert listed["order_id"] == order_id
    assert (listed["status"], listed["amount_cents"], listed["currency"]) == (
        "awaiting_confirmation",
        1999,
        "SEK",
    )
    one = await payments.http.get(f"/api/v1/payments/{listed['id']}")
    assert (one.status_code, one.json()) == (200, listed)
    everything = await payments.http.get("/api/v1/payments", params={"limit": 1, "page": 2})
    assert everything.json()["total"] == 2
    assert len(everything.json()["items"]) == 1


async def test_unknown_or_malformed_ids(payments):
    missing = await payments.http.get(f"/api/v1/payments/{uuid.uuid4()}")
    malformed = await payments.http.get("/api/v1/payments/not-a-uuid")
    bad_filter = await payments.http.get("/api/v1/payments", params={"order_id": "nope"})
    none = await payments.http.get("/api/v1/payments", params={"order_id": str(uuid.uuid4())})

    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]
    assert (malformed.status_code, bad_filter.status_code) == (422, 422)
    assert none.json() == {"items": [], "total": 0, "page": 1, "pages": 0}


async def test_operations_endpoints(payments):
    pending_before = await sample(payments.http, WEBHOOKS, outcome="pending")
    # For an order payments has not heard of: kept, and counted as pending.
    webhook = await payments.webhook("payment.succeeded", str(uuid.uuid4()))
    assert (webhook.status_code, webhook.json()["outcome"]) == (202, "pending")

    health = await payments.http.get("/healthz")
    ready = await payments.http.get("/readyz")
    docs = await payments.http.get("/docs")
    openapi = await payments.http.get("/openapi.json")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "rabbitmq": "ok",
        "kafka": "ok",
        f"consumer:rabbit:{PAYMENT_REQUESTS_QUEUE}": "ok",
    }
    assert await sample(payments.http, WEBHOOKS, outcome="pending") == pending_before + 1
    assert docs.status_code == 200
    assert {"/webhooks/psp", "/api/v1/payments", "/api/v1/payments/{payment_id}"} <= set(
        openapi.json()["paths"]
    )
