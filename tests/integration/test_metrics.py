"""`/metrics` tells what the services did: messages, retries, dead letters, handlers, outbox, webhooks.

The in-process services share one registry, so every number is read before and after, as a delta.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from shared.channels import Channel
from shared.db import make_engine
from shared.envelope import new_envelope
from tests.support.eventually import eventually
from tests.support.system import System, running_system

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset], float]

PUBLISHED = "switchyard_messages_published_total"
CONSUMED = "switchyard_messages_consumed_total"
UNREAD = "switchyard_messages_unread_total"
RETRIED = "switchyard_messages_retried_total"
DEAD_LETTERED = "switchyard_messages_dead_lettered_total"
HANDLED = "switchyard_handler_seconds_count"
BACKLOG = "switchyard_outbox_backlog"
OLDEST = "switchyard_outbox_oldest_age_seconds"
WEBHOOKS = "switchyard_webhooks_total"
COMMANDS = Channel.rabbit("payments.commands", "payment.requested")


@pytest.fixture
async def system(stack, database, names) -> AsyncIterator[System]:
    # A command stuck behind a lock fails fast, so its retries run in a fraction of a second.
    async with running_system(
        stack, database, names, payments={"db_statement_timeout_ms": 300}
    ) as running:
        yield running


async def scrape(system: System, service: str = "orders") -> Samples:
    """Every sample `/metrics` of `service` shows, by name and labels."""
    response = await system.client.http.get(f"{getattr(system.client.urls, service)}/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_a_saga_shows_in_the_message_handler_and_webhook_metrics(system):
    before = await scrape(system)
    await system.paid_order()
    after = await eventually(lambda: _settled(system, before), message="the saga counted")

    def rabbit(name: str, channel: str) -> float:
        return moved(before, after, name, broker="rabbit", channel=channel)

    def kafka(name: str, channel: str) -> float:
        return moved(before, after, name, broker="kafka", channel=channel)

    # Published to exchanges and topics; consumed from queues and topics.
    assert rabbit(PUBLISHED, "payments.commands") == 1  # payment.requested
    assert rabbit(PUBLISHED, "payments.events") == 1  # payment.succeeded
    assert kafka(PUBLISHED, "users.events") == 1  # user.registered
    assert kafka(PUBLISHED, "orders.events") == 2  # order.created, order.paid
    assert rabbit(CONSUMED, "payments.payment-requests") == 1
    assert rabbit(CONSUMED, "orders.payment-events") == 1
    assert kafka(CONSUMED, "orders.events") == 1  # users handles order.paid
    assert kafka(UNREAD, "orders.events") == 1  # and commits order.created unread
    assert kafka(UNREAD, "users.events") == 1  # orders reads user.deleted only
    assert rabbit(HANDLED, "payments.payment-requests") == 1
    assert kafka(HANDLED, "orders.events") == 1
    assert moved(before, after, WEBHOOKS, outcome="applied") == 1
    for schema in ("users", "orders", "payments"):  # every relay reports, and has caught up
        assert after[BACKLOG, frozenset({"schema": schema}.items())] == 0, schema
        assert after[OLDEST, frozenset({"schema": schema}.items())] == 0, schema


async def _settled(system: System, before: Samples) -> Samples | None:
    """The metrics once users, the saga's last consumer, has counted `order.paid`."""
    samples = await scrape(system)
    last = moved(before, samples, CONSUMED, broker="kafka", channel="orders.events")
    unread = moved(before, samples, UNREAD, broker="kafka", channel="users.events")
    return samples if (last, unread) == (1, 1) else None


async def test_failures_show_as_retries_dead_letters_and_rejected_webhooks(system, database, names):
    before = await scrape(system)
    runtime = system.apps["orders"].state.runtime
    order_id = str(uuid.uuid4())
    command = new_envelope(
        type="payment.requested",
        source="switchyard/orders",
        subject=order_id,
        data={
            "order_id": order_id,
            "user_id": str(uuid.uuid4()),
            "amount_cents": 1,
            "currency": "EUR",
        },
    )
    admin = make_engine(database.admin_url, pool_size=1)
    try:
        async with admin.connect() as holder, holder.begin():
            # payments locks the order first: while we hold it, every attempt times out.
            await holder.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:o, 0))"), {"o": order_id}
            )
            await runtime.rabbit.publish(COMMANDS, command)
            await eventually(
                lambda: _parked_once(system, before), timeout=20, message="command parked"
            )
    finally:
        await admin.dispose()
    await runtime.kafka.producer.send(
        names + "orders.events", b"not an event", key=b"k", headers=[]
    )
    rejected = await system.client.http.post(
        f"{system.client.urls.payments}/webhooks/psp", content=b"{}", headers={"webhook-id": "x"}
    )
    assert rejected.status_code == 401

    after = await eventually(
        lambda: _dead_lettered_on_kafka(system, before), message="poison record dead-lettered"
    )
    queue = {"broker": "rabbit", "channel": "payments.payment-requests"}
    assert moved(before, after, RETRIED, **queue) == 3  # one per delay tier
    assert moved(before, after, DEAD_LETTERED, **queue) == 1
    assert moved(before, after, CONSUMED, **queue) == 0
    assert moved(before, after, HANDLED, **queue) == 4  # every attempt is timed
    assert moved(before, after, DEAD_LETTERED, broker="kafka", channel="orders.events") == 1
    assert moved(before, after, WEBHOOKS, outcome="rejected") == 1


async def _parked_once(system: System, before: Samples) -> bool:
    labels = {"broker": "rabbit", "channel": "payments.payment-requests"}
    return moved(before, await scrape(system, "payments"), DEAD_LETTERED, **labels) == 1


async def _dead_lettered_on_kafka(system: System, before: Samples) -> Samples | None:
    after = await scrape(system, "users")
    labels = {"broker": "kafka", "channel": "orders.events"}
    return after if moved(before, after, DEAD_LETTERED, **labels) == 1 else None


async def test_an_outbox_row_that_cannot_be_sent_shows_as_backlog_and_age(system, database):
    admin = make_engine(database.admin_url, pool_size=1)
    try:
        async with admin.begin() as conn:
            # Not an envelope: the relay fails on it every round, so it stays unsent.
            await conn.execute(
                sa.text(
                    "INSERT INTO orders.outbox (message_id, broker, destination, key, type, payload)"
                    " VALUES (:id, 'kafka', 'orders.events', :id, 'order.created', '{}')"
                ),
                {"id": str(uuid.uuid4())},
            )

        async def stuck() -> Samples | None:
            samples = await scrape(system)
            return samples if value(samples, OLDEST, schema="orders") > 0 else None

        samples = await eventually(stuck, message="the stuck row reported")
        assert value(samples, BACKLOG, schema="orders") == 1

        async with admin.begin() as conn:
            await conn.execute(sa.text("DELETE FROM orders.outbox WHERE sent_at IS NULL"))
    finally:
        await admin.dispose()

    async def drained() -> bool:
        samples = await scrape(system)
        return (
            value(samples, BACKLOG, schema="orders") == value(samples, OLDEST, schema="orders") == 0
        )

    await eventually(drained, message="the backlog reported empty")
