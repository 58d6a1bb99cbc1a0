"""Placing orders over HTTP: users asked for real, one transaction, both messages published."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.integration.orders.conftest import new_user
from tests.support.eventually import eventually
from tests.support.kafka_probe import header_map, read_records

pytestmark = pytest.mark.integration

ITEMS = [
    {"sku": "book", "quantity": 2, "unit_price_cents": 1250},
    {"sku": "pen", "quantity": 3, "unit_price_cents": 99},
]


async def test_order_is_stored_and_both_messages_are_published(
    orders, users, commands, stack, names
):
    user_id = await new_user(users)
    r = await orders.http.post(
        "/api/v1/orders",
        json={"user_id": user_id, "currency": "EUR", "items": ITEMS},
        headers={"X-Correlation-ID": "corr-happy"},
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending_payment"
    assert order["total_cents"] == 2 * 1250 + 3 * 99
    assert (order["user_id"], order["currency"], order["items"]) == (user_id, "EUR", ITEMS)
    order_id = order["id"]

    [record] = await read_records(
        stack.kafka_bootstrap, names + "orders.events", partitions=3, count=1
    )
    assert record.key == order_id.encode()
    assert header_map(record)["content-type"] == "application/cloudevents+json"
    created = json.loads(record.value)
    assert created["type"] == "order.created"
    assert created["correlationid"] == "corr-happy"
    assert created["data"] == {
        "order_id": order_id,
        "user_id": user_id,
        "total_cents": 2797,
        "currency": "EUR",
        "items": ITEMS,
    }

    await eventually(lambda: commands.of("payment.requested", order_id))
    [requested] = commands.of("payment.requested", order_id)
    assert requested.data == {
        "order_id": order_id,
        "user_id": user_id,
        "amount_cents": 2797,
        "currency": "EUR",
    }
    assert (requested.correlationid, requested.causationid) == ("corr-happy", created["id"])

    async def all_sent() -> bool:
        rows = await orders.outbox(order_id)
        return len(rows) == 2 and all(row.sent_at for row in rows)

    await eventually(all_sent, message="outbox rows sent")
    rows = await orders.outbox(order_id)
    assert [(r.type, r.broker, r.destination, r.routing_key) for r in rows] == [
        ("order.created", "kafka", "orders.events", None),
        ("payment.requested", "rabbit", "payments.commands", "payment.requested"),
    ]

    assert (await orders.http.get(f"/api/v1/orders/{order_id}")).json() == order
    listed = (await orders.http.get("/api/v1/orders", params={"user_id": user_id})).json()
    assert (listed["total"], [o["id"] for o in listed["items"]]) == (1, [order_id])


async def test_users_down_is_503_and_nothing_is_stored_or_published(orders_without_users):
    orders = orders_without_users
    r = await orders.http.post(
        "/api/v1/orders",
        json={"user_id": str(uuid.uuid4()), "currency": "EUR", "items": ITEMS},
        headers={"Idempotency-Key": "k-down"},
    )
    assert r.status_code == 503, r.text
    assert "users" in r.json()["detail"]
    for table in ("orders", "outbox", "idempotency_keys", "order_history"):
        assert await orders.rows(f"SELECT 1 FROM orders.{table}") == [], table


async def test_unknown_or_deleted_user_is_422(orders, users):
    user_id = await new_user(users)
    assert (await users.delete(f"/api/v1/users/{user_id}")).status_code == 204
    for unknown in (user_id, str(uuid.uuid4())):
        r = await orders.http.post(
            "/api/v1/orders", json={"user_id": unknown, "currency": "EUR", "items": ITEMS}
        )
        assert r.status_code == 422, r.text
        assert "unknown user" in r.json()["detail"]
    assert await orders.rows("SELECT 1 FROM orders.orders") == []


async def test_same_key_same_body_is_the_same_order_and_nothing_new(orders, users):
    user_id = await new_user(users)
    body = {"user_id": user_id, "currency": "EUR", "items": ITEMS}
    key = {"Idempotency-Key": "retry-1"}
    first = await orders.http.post("/api/v1/orders", json=body, headers=key)
    again = await orders.http.post("/api/v1/orders", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(await orders.rows("SELECT 1 FROM orders.orders")) == 1
    assert len(await orders.rows("SELECT 1 FROM orders.outbox")) == 2

    other = body | {"currency": "USD"}
    clash = await orders.http.post("/api/v1/orders", json=other, headers=key)
    assert clash.status_code == 409, clash.text
    fresh = await orders.http.post("/api/v1/orders", json=other, headers={"Idempotency-Key": "2"})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert len(await orders.rows("SELECT 1 FROM orders.orders")) == 2


async def test_concurrent_requests_with_one_key_make_one_order(orders, users):
    user_id = await new_user(users)
    body = {"user_id": user_id, "currency": "EUR", "items": ITEMS}
    responses = await asyncio.gather(
        *(
            orders.http.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "race"})
            for _ in range(8)
        )
    )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert len(await orders.rows("SELECT 1 FROM orders.orders")) == 1
    assert len(await orders.rows("SELECT 1 FROM orders.outbox")) == 2


async def test_reading_orders_and_bad_ids(orders, users):
    user_id = await new_user(users)
    placed = await orders.place(user_id)
    await orders.place(await new_user(users))
    everyone = (await orders.http.get("/api/v1/orders")).json()
    assert everyone["total"] == 2
    mine = (await orders.http.get("/api/v1/orders", params={"user_id": user_id})).json()
    assert [o["id"] for o in mine["items"]] == [placed["id"]]

    missing = uuid.uuid4()
    assert (await orders.http.get(f"/api/v1/orders/{missing}")).status_code == 404
    assert (await orders.http.post(f"/api/v1/orders/{missing}/cancel")).status_code == 404
    for bad in ("/api/v1/orders/42", "/api/v1/orders?user_id=nope", "/api/v1/orders?limit=0"):
        r = await orders.http.get(bad)
        assert r.status_code == 422, (bad, r.text)
    r = await orders.http.post("/api/v1/orders/not-an-id/cancel")
    assert r.status_code == 422, r.text
    r = await orders.http.post("/api/v1/orders", json={"user_id": user_id, "items": []})
    assert r.status_code == 422 and r.json()["detail"], r.text
