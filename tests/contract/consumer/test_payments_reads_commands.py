"""Payments reads orders' commands (RabbitMQ `payments.commands`): take a payment, give it back."""

from __future__ import annotations

import uuid

import pytest
from pact import Pact, match

from payments import db
from payments.app import wiring
from payments.domain import PaymentStatus
from tests.contract.consumer.messages import CURRENCY, cloud_event, deliver, expect, on_rabbit
from tests.contract.pacts import publish

pytestmark = pytest.mark.contract

ORDER_ID = "2e4a6c8e-0b1d-4f3a-8c5e-7a9b1c3d5e74"
USER_ID = "8f0b2d4f-6a1c-4e3b-9d5f-1a3c5e7f9b26"
AMOUNT = 2599


def command(pact: Pact, type: str, data: dict) -> None:
    body = cloud_event(type, source="switchyard/orders", subject=ORDER_ID, data=data)
    expect(pact, f"a {type} command", body, on_rabbit("payments.commands", type))


async def payment_of(database):
    async with database.autocommit() as conn:
        return await db.payment_for_order(conn, uuid.UUID(ORDER_ID))


async def test_payment_requested_opens_a_payment_awaiting_the_provider(database_of):
    pact = Pact("payments", "orders")
    data = {
        "order_id": match.uuid(ORDER_ID),
        "user_id": match.uuid(USER_ID),
        "amount_cents": match.int(AMOUNT),
        "currency": match.regex("EUR", regex=CURRENCY),
    }
    command(pact, "payment.requested", data)
    database = database_of("payments")

    await deliver(wiring(), pact, database)

    payment = await payment_of(database)
    assert payment.status == PaymentStatus.AWAITING_CONFIRMATION
    assert (payment.user_id, payment.amount_cents, payment.currency) == (
        uuid.UUID(USER_ID),
        AMOUNT,
        "EUR",
    )
    publish(pact)


async def test_refund_requested_waits_for_the_providers_refund(database_of):
    pact = Pact("payments", "orders")
    data = {"order_id": match.uuid(ORDER_ID), "reason": match.str("order_cancelled")}
    command(pact, "payment.refund_requested", data)
    database = database_of("payments")
    async with database.transaction() as conn:
        await db.insert_payment(
            conn,
            id=uuid.uuid4(),
            order_id=uuid.UUID(ORDER_ID),
            user_id=uuid.UUID(USER_ID),
            amount_cents=AMOUNT,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            provider_payment_id="psp-1",
            correlation_id="c-1",
        )

    await deliver(wiring(), pact, database)

    assert (await payment_of(database)).status == PaymentStatus.REFUND_PENDING
    publish(pact)
