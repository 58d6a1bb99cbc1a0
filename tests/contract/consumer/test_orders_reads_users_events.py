"""Orders reads `users.events` (Kafka): a deleted user's orders still waiting for payment end."""

from __future__ import annotations

import uuid

import pytest
from pact import Pact, match

from orders import db
from orders.app import wiring
from orders.domain import Item, OrderStatus
from orders.handlers import place_order
from tests.contract.consumer.messages import cloud_event, deliver, expect, on_kafka
from tests.contract.pacts import publish

pytestmark = pytest.mark.contract

USER_ID = "3a7c9e1b-5d2f-4a8c-b6e0-4f1a3c5e7d92"


class KnownUsers:
    """Every user exists: placing the order is set-up here, not the interaction under test."""

    async def ensure_exists(self, user_id: uuid.UUID, correlation_id: str | None = None) -> None:
        return None


async def test_user_deleted_cancels_the_users_open_orders(database_of):
    pact = Pact("orders", "users")
    expect(
        pact,
        "a user.deleted event",
        cloud_event(
            "user.deleted",
            source="switchyard/users",
            subject=USER_ID,
            data={"user_id": match.uuid(USER_ID)},
        ),
        on_kafka("users.events", key=USER_ID),
    )
    database = database_of("orders")
    order, _ = await place_order(
        database,
        KnownUsers(),
        user_id=uuid.UUID(USER_ID),
        currency="EUR",
        items=[Item("pen", 1, 99)],
    )

    await deliver(wiring(), pact, database)

    async with database.autocommit() as conn:
        assert (await db.fetch_order(conn, order.id)).status == OrderStatus.CANCELLED
    publish(pact)
