"""Payments keeps its pacts: the payment events its real handlers make it owe."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import partial

import pytest

from payments import db, handlers
from payments.messages import ProviderEvent
from shared.db import Database
from shared.envelope import new_envelope
from tests.contract.provider.outbox import last_owed
from tests.contract.provider.verification import assert_all_verified, verify

pytestmark = pytest.mark.contract

AMOUNT, CURRENCY = 2599, "EUR"


class Payment:
    """One order's payment walked through payments' real handlers, each step in a transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.order_id = str(uuid.uuid4())

    async def command(self, type: str, data: dict) -> None:
        # What orders sends: the input that drives payments, not under test here.
        envelope = new_envelope(
            type=type,
            source="switchyard/orders",
            subject=self.order_id,
            data={"order_id": self.order_id, **data},
        )
        async with self.database.transaction() as conn:
            await handlers.COMMAND_HANDLERS[type](conn, envelope)

    async def webhook(self, type: str, **data) -> None:
        """The provider's report, as the webhook endpoint hands it over once its signature holds."""
        body = json.dumps(
            {
                "type": type,
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {
                    "order_id": self.order_id,
                    "amount_cents": AMOUNT,
                    "currency": CURRENCY,
                    "provider_payment_id": "psp-" + self.order_id[:8],
                    **data,
                },
            }
        ).encode()
        event = ProviderEvent.model_validate_json(body)
        async with self.database.transaction() as conn:
            await handlers.receive_webhook(conn, f"msg_{uuid.uuid4().hex}", event, body)

    async def requested(self) -> None:
        data = {"user_id": str(uuid.uuid4()), "amount_cents": AMOUNT, "currency": CURRENCY}
        await self.command("payment.requested", data)


async def succeeded(database) -> None:
    payment = Payment(database)
    await payment.requested()
    await payment.webhook("payment.succeeded")


async def failed(database) -> None:
    payment = Payment(database)
    await payment.requested()
    await payment.webhook("payment.failed", failure_reason="card_declined")


async def refunded(database) -> None:
    payment = Payment(database)
    await payment.requested()
    await payment.webhook("payment.succeeded")
    await payment.command("payment.refund_requested", {"reason": "order_cancelled"})
    await payment.webhook("payment.refunded")


def messages(database: Database) -> dict:
    """Each message as payments' real handlers leave it in the outbox, by the pacts' descriptions."""
    scenarios = {
        "a payment.succeeded event": succeeded,
        "a payment.failed event": failed,
        "a payment.refunded event": refunded,
    }
    return {
        d: partial(last_owed, database, db.outbox, partial(s, database))
        for d, s in scenarios.items()
    }


async def test_payments_keeps_every_pact_it_is_named_in(database):
    pooled = Database(database.url("payments"), size=2)
    try:
        run = await verify("payments", messages=messages(pooled))
    finally:
        await pooled.close()
    assert_all_verified(run)
