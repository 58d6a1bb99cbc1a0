"""Orders keeps its pacts: the events and payment commands its real handlers make it owe."""

from __future__ import annotations

import uuid
from functools import partial

import pytest

from orders import db, handlers
from orders.domain import Item
from shared.db import Database
from shared.envelope import Envelope, new_envelope
from tests.contract.provider.outbox import last_owed
from tests.contract.provider.verification import assert_all_verified, verify

pytestmark = pytest.mark.contract


class KnownUsers:
    """Every user exists: asking users over HTTP is the other pact's business."""

    async def ensure_exists(self, user_id: uuid.UUID, correlation_id: str | None = None) -> None:
        return None


def payment_event(type: str, order_id: uuid.UUID, **data) -> Envelope:
    """What payments reports about an order: the input that drives orders, not under test here."""
    data = {"payment_id": str(uuid.uuid4()), "order_id": str(order_id), **data}
    return new_envelope(type=type, source="switchyard/payments", subject=str(order_id), data=data)


class Saga:
    """One order walked through orders' real handlers, each step in its own transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def placed(self) -> uuid.UUID:
        order, _ = await handlers.place_order(
            self.database,
            KnownUsers(),
            user_id=uuid.uuid4(),
            currency="EUR",
            items=[Item("book", 2, 1250), Item("pen", 1, 99)],
        )
        return order.id

    async def paid(self) -> uuid.UUID:
        order_id = await self.placed()
        await self.hears(payment_event("payment.succeeded", order_id))
        return order_id

    async def refunded(self) -> None:
        order_id = await self.paid()
        await self.hears(payment_event("payment.refunded", order_id))

    async def cancelled_then_paid(self) -> None:
        order_id = await self.placed()
        async with self.database.transaction() as conn:
            await handlers.cancel_order(conn, order_id)
        await self.hears(payment_event("payment.succeeded", order_id))

    async def hears(self, envelope: Envelope) -> None:
        """A payment event, through the handler orders registered for its type."""
        async with self.database.transaction() as conn:
            await handlers.PAYMENT_EVENT_HANDLERS[envelope.type](conn, envelope)


def messages(database: Database) -> dict:
    """Each message as orders' real handlers leave it in the outbox, by the pacts' descriptions."""
    saga = Saga(database)
    scenarios = {
        "an order.paid event": saga.paid,
        "an order.refunded event": saga.refunded,
        "a payment.requested command": saga.placed,
        "a payment.refund_requested command": saga.cancelled_then_paid,
    }
    return {d: partial(last_owed, database, db.outbox, s) for d, s in scenarios.items()}


async def test_orders_keeps_every_pact_it_is_named_in(database):
    pooled = Database(database.url("orders"), size=2)
    try:
        run = await verify("orders", messages=messages(pooled))
    finally:
        await pooled.close()
    assert_all_verified(run)
