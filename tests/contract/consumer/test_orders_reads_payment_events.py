"""Orders reads payments' events (RabbitMQ `payments.events`): an order is paid, fails, is refunded."""

from __future__ import annotations

import uuid

import pytest
from pact import Pact, match

from orders import db
from orders.app import wiring
from orders.domain import OrderStatus
from tests.contract.consumer.messages import cloud_event, deliver, expect, on_rabbit
from tests.contract.pacts import publish

pytestmark = pytest.mark.contract

ORDER_ID = "6b8d0f2a-4c6e-4a1b-8d3f-5e7a9c1b3d58"
USER_ID = "1c3e5a7c-9e0b-4d2f-a4b6-8c0e2a4c6e19"
PAYMENT_ID = "d2f4b6d8-a0c2-4e5f-b7d9-3f5b7d9f1a40"


def payment_event(pact: Pact, type: str, data: dict) -> None:
    data = {"order_id": match.uuid(ORDER_ID), **data}
    body = cloud_event(type, source="switchyard/payments", subject=ORDER_ID, data=data)
    expect(pact, f"a {type} event", body, on_rabbit("payments.events", type))


async def an_order(database, status: OrderStatus) -> None:
    async with database.transaction() as conn:
        await db.insert_order(
            conn, uuid.UUID(ORDER_ID), uuid.UUID(USER_ID), status, 2599, "EUR", []
        )


async def the_order(database):
    async with database.autocommit() as conn:
        return await db.fetch_order(conn, uuid.UUID(ORDER_ID))


async def test_payment_succeeded_marks_the_order_paid(database_of):
    pact = Pact("orders", "payments")
    # Orders keeps the payment id as text: any string will do, it need not be a uuid.
    payment_event(pact, "payment.succeeded", {"payment_id": match.str(PAYMENT_ID)})
    database = database_of("orders")
    await an_order(database, OrderStatus.PENDING_PAYMENT)

    await deliver(wiring(), pact, database)

    order = await the_order(database)
    assert (order.status, order.payment_id) == (OrderStatus.PAID, PAYMENT_ID)
    publish(pact)


async def test_payment_failed_ends_the_order_with_the_reason(database_of):
    pact = Pact("orders", "payments")
    payment_event(pact, "payment.failed", {"reason": match.str("card_declined")})
    database = database_of("orders")
    await an_order(database, OrderStatus.PENDING_PAYMENT)

    await deliver(wiring(), pact, database)

    order = await the_order(database)
    assert (order.status, order.cancel_reason) == (OrderStatus.PAYMENT_FAILED, "card_declined")
    publish(pact)


async def test_payment_refunded_marks_a_paid_order_refunded(database_of):
    pact = Pact("orders", "payments")
    payment_event(pact, "payment.refunded", {})
    database = database_of("orders")
    await an_order(database, OrderStatus.PAID)

    await deliver(wiring(), pact, database)

    assert (await the_order(database)).status == OrderStatus.REFUNDED
    publish(pact)
