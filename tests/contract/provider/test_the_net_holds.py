"""A producer that breaks its pact fails verification, and the report says what broke."""

from __future__ import annotations

import pytest
from pydantic import ConfigDict, Field

from orders import handlers
from orders.messages import PAYMENTS_COMMANDS, OrderPaid, PaymentRequested
from shared.channels import Channel
from shared.db import Database
from tests.contract.provider.test_orders import messages
from tests.contract.provider.verification import Verification, assert_all_verified, verify

pytestmark = pytest.mark.contract


class OrderPaidRenamed(OrderPaid):
    """`order.paid` whose `total_cents` went out as `amount_cents`: a rename in the producer."""

    model_config = ConfigDict(serialize_by_alias=True)
    total_cents: int = Field(serialization_alias="amount_cents")


async def verify_orders(database) -> Verification:
    pooled = Database(database.url("orders"), size=2)
    try:
        return await verify("orders", messages=messages(pooled))
    finally:
        await pooled.close()


def failed(run: Verification) -> list[str]:
    return sorted(r["description"] for r in run.results if r["result"] != "OK")


async def test_a_renamed_field_fails_the_consumer_that_reads_it(database, monkeypatch):
    monkeypatch.setattr(handlers, "OrderPaid", OrderPaidRenamed)

    run = await verify_orders(database)

    assert failed(run) == ["an order.paid event"], run.report
    assert "Actual map is missing the following keys: total_cents" in run.report, run.report


async def test_a_wrong_routing_key_fails_the_consumer_bound_to_the_right_one(database, monkeypatch):
    wrong = Channel.rabbit(PAYMENTS_COMMANDS, "payment.request")
    monkeypatch.setattr(PaymentRequested, "CHANNEL", wrong)

    run = await verify_orders(database)

    assert failed(run) == ["a payment.requested command"], run.report
    assert "'routingKey'" in run.report and '"payment.request"' in run.report, run.report


async def test_a_verification_that_checks_nothing_fails():
    # A misspelt provider finds no pact: pact calls that a pass, with zero interactions checked.
    run = await verify("no-such-provider", messages={"an event": lambda: None})

    assert run.verifier.results["result"] is True
    with pytest.raises(AssertionError, match="no committed pact names the provider"):
        assert_all_verified(run)
