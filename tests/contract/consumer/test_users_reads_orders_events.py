"""Users reads `orders.events` (Kafka): paid and refunded orders move a user's lifetime stats."""

from __future__ import annotations

import uuid

import pytest
from pact import Pact, match

from tests.contract.consumer.messages import cloud_event, deliver, expect, on_kafka
from tests.contract.pacts import publish
from users import db
from users.app import wiring

pytestmark = pytest.mark.contract

USER_ID = "7d2e4f6a-8b0c-4d1e-a3f5-6b8d0e2f4a61"
ORDER_ID = "b4c6d8e0-1f3a-4b5c-9d7e-0f2a4b6c8d13"
TOTAL = 2599


def order_event(pact: Pact, type: str) -> None:
    data = {
        "order_id": match.uuid(ORDER_ID),
        "user_id": match.uuid(USER_ID),
        "total_cents": match.int(TOTAL),
    }
    body = cloud_event(type, source="switchyard/orders", subject=ORDER_ID, data=data)
    expect(pact, f"an {type} event", body, on_kafka("orders.events", key=ORDER_ID))


async def a_user(database, *, orders_paid: int = 0, spent: int = 0) -> None:
    async with database.transaction() as conn:
        await db.insert_user(conn, user_id=uuid.UUID(USER_ID), email="ada@example.com", name="Ada")
        await conn.execute(
            "UPDATE users.users SET orders_paid = $2, lifetime_spent_cents = $3 WHERE id = $1",
            uuid.UUID(USER_ID),
            orders_paid,
            spent,
        )


async def stats(database) -> tuple[int, int]:
    async with database.autocommit() as conn:
        user = await db.fetch_user(conn, uuid.UUID(USER_ID))
    return user.orders_paid, user.lifetime_spent_cents


async def test_order_paid_counts_towards_the_users_stats(database_of):
    pact = Pact("users", "orders")
    order_event(pact, "order.paid")
    database = database_of("users")
    await a_user(database)

    await deliver(wiring(), pact, database)

    assert await stats(database) == (1, TOTAL)
    publish(pact)


async def test_order_refunded_takes_the_order_back_out(database_of):
    pact = Pact("users", "orders")
    order_event(pact, "order.refunded")
    database = database_of("users")
    await a_user(database, orders_paid=1, spent=TOTAL)

    await deliver(wiring(), pact, database)

    assert await stats(database) == (0, 0)
    publish(pact)
