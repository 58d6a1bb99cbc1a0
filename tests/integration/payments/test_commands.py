"""Commands from orders on `payments.payment-requests`: one payment per order, whatever repeats."""

from __future__ import annotations

import uuid

import aio_pika
import pytest
from prometheus_client import REGISTRY

from shared import failure_headers as fh
from tests.integration.payments.conftest import PaymentsService
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

CONSUMER = "payments.payment-requests"


def duplicates_skipped() -> float:
    value = REGISTRY.get_sample_value("switchyard_inbox_duplicates_total", {"consumer": CONSUMER})
    return value or 0.0


def retries() -> float:
    labels = {"broker": "rabbit", "channel": CONSUMER}
    return REGISTRY.get_sample_value("switchyard_messages_retried_total", labels) or 0.0


async def inbox_ids(payments: PaymentsService) -> set[str]:
    return {r.message_id for r in await payments.rows("SELECT message_id FROM payments.inbox")}


async def test_redelivered_command_creates_one_payment(payments):
    order_id = str(uuid.uuid4())
    command = await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id))
    first = await payments.payment(order_id)
    skipped = duplicates_skipped()

    await payments.command(command.type, command.data, envelope=command)  # the same message

    await eventually(lambda: duplicates_skipped() == skipped + 1, message="duplicate skipped")
    assert await payments.payment(order_id) == first
    assert (await payments.counts())["payments"] == 1
    assert await inbox_ids(payments) == {command.id}


async def test_a_second_request_for_the_same_order_changes_nothing(payments):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id, amount_cents=4200)
    await eventually(lambda: payments.payment(order_id))
    first = await payments.payment(order_id)

    again = await payments.request_payment(order_id, amount_cents=9900)

    await eventually(lambda: inbox_contains(payments, again.id), message="second command handled")
    assert await payments.payment(order_id) == first
    assert (await payments.counts())["payments"] == 1


async def inbox_contains(payments: PaymentsService, message_id: str) -> bool:
    return message_id in await inbox_ids(payments)


async def test_unreadable_command_is_parked_at_once_and_creates_nothing(payments, stack, names):
    order_id = str(uuid.uuid4())
    retried = retries()
    command = await payments.command(
        "payment.requested", {"order_id": order_id, "amount_cents": "lots", "currency": "EUR"}
    )

    parked = await eventually(lambda: parked_message(stack.amqp_url, names + CONSUMER + ".dlq"))

    assert parked.message_id == command.id
    # At once: handled a single time, never sent round a retry queue.
    assert parked.headers[fh.ATTEMPTS] == 1
    assert parked.headers[fh.ERROR_TYPE] == "PermanentError"
    assert "payload rejected" in parked.headers[fh.ERROR_MESSAGE]
    assert parked.headers[fh.ORIGINAL_QUEUE] == CONSUMER
    assert retries() == retried
    assert await payments.payment(order_id) is None
    assert (await payments.counts())["inbox"] == 0


async def parked_message(url: str, queue: str) -> aio_pika.abc.AbstractIncomingMessage | None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(queue, passive=True)
        return await dlq.get(no_ack=True, fail=False)


async def test_refund_request_for_a_payment_not_succeeded_is_recorded_and_ignored(payments):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id))
    before = await payments.payment(order_id)

    refund = await payments.command("payment.refund_requested", {"order_id": order_id})
    unknown = await payments.command("payment.refund_requested", {"order_id": str(uuid.uuid4())})

    await eventually(lambda: inbox_contains(payments, refund.id))
    await eventually(lambda: inbox_contains(payments, unknown.id))
    assert await payments.payment(order_id) == before
    assert (await payments.counts())["payments"] == 1
    assert await payments.owed(order_id) == []
