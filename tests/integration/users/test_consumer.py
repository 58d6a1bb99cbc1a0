"""Users reading Kafka `orders.events`: lifetime stats, exactly once, never stuck on one event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.channels import Channel
from shared.envelope import Envelope, decode, new_envelope
from shared.kafka import KafkaBus
from tests.integration.users.probes import count
from tests.support.eventually import eventually
from tests.support.kafka_probe import header_map, read_records, record_count
from users import db

pytestmark = pytest.mark.integration

ORDERS_EVENTS = Channel.kafka("orders.events")
PARTITIONS = 3


@pytest.fixture
async def orders(stack, names) -> AsyncIterator[KafkaBus]:
    """Publishes on this test's `orders.events`, standing in for the orders service."""
    bus = KafkaBus(stack.kafka_bootstrap, prefix=names)
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture
async def service(start_users):
    return await start_users(consume=True)


def order_event(type: str, user_id: str, total_cents: int = 0, **extra) -> Envelope:
    """An orders event as the orders service would publish it (subject and key: the order id)."""
    order_id = str(uuid.uuid4())
    data = {"order_id": order_id, "user_id": user_id, "total_cents": total_cents}
    return new_envelope(type=type, source="switchyard/orders", subject=order_id, data=data | extra)


async def stats(service, user_id: str) -> dict:
    return (await service.http.get(f"/api/v1/users/{user_id}")).json()["stats"]


async def handled(admin, envelope: Envelope) -> bool:
    """Whether users' consumer committed this message (its inbox row)."""
    return await count(admin, db.inbox, db.inbox.c.message_id == envelope.id) == 1


async def publish_then_mark(orders: KafkaBus, admin, *events: Envelope, marker: Envelope):
    """Publish `events`, then `marker` on the same partition; wait until the marker is handled.

    Records of one partition are handled in order, so by then every event before it was too.
    """
    key = events[0].subject
    for event in events:
        await orders.publish(ORDERS_EVENTS, event, key=key)
    await orders.publish(ORDERS_EVENTS, marker, key=key)
    await eventually(lambda: handled(admin, marker), message="marker event handled")


async def stats_become(service, user_id: str, orders_paid: int, cents: int) -> None:
    expected = {"orders_paid": orders_paid, "lifetime_spent_cents": cents}

    async def reached() -> bool:
        return await stats(service, user_id) == expected

    await eventually(reached, message=f"stats {expected}")


async def test_paid_adds_to_stats_and_refunded_takes_it_back(service, orders):
    user = await service.create("buyer@example.com")

    await orders.publish(ORDERS_EVENTS, order_event("order.paid", user["id"], 2500))
    await stats_become(service, user["id"], 1, 2500)
    await orders.publish(ORDERS_EVENTS, order_event("order.paid", user["id"], 1500))
    await stats_become(service, user["id"], 2, 4000)

    await orders.publish(ORDERS_EVENTS, order_event("order.refunded", user["id"], 2500))
    await stats_become(service, user["id"], 1, 1500)


async def test_order_paid_delivered_twice_changes_stats_once(service, orders, admin):
    user = await service.create("twice@example.com")
    paid = order_event("order.paid", user["id"], 1000)
    marker = order_event("order.paid", user["id"], 1)

    await publish_then_mark(orders, admin, paid, paid, marker=marker)

    assert await stats(service, user["id"]) == {"orders_paid": 2, "lifetime_spent_cents": 1001}
    assert await count(admin, db.inbox) == 2


async def test_event_for_unknown_user_is_recorded_and_skipped(service, orders, admin, stack, names):
    user = await service.create("known@example.com")
    stranger = order_event("order.paid", str(uuid.uuid4()), 700)
    marker = order_event("order.paid", user["id"], 1)

    await publish_then_mark(orders, admin, stranger, marker=marker)

    assert await handled(admin, stranger)  # recorded, so a redelivery is skipped too
    assert await stats(service, user["id"]) == {"orders_paid": 1, "lifetime_spent_cents": 1}
    dead_letters = names + "orders.events.dlt"
    assert await record_count(stack.kafka_bootstrap, dead_letters, partitions=PARTITIONS) == 0


async def test_other_order_events_are_ignored(service, orders, admin):
    user = await service.create("other@example.com")
    created = order_event("order.created", user["id"], 900, currency="EUR", items=[])
    cancelled = order_event("order.cancelled", user["id"], reason="changed mind")
    marker = order_event("order.paid", user["id"], 1)

    await publish_then_mark(orders, admin, created, cancelled, marker=marker)

    assert await stats(service, user["id"]) == {"orders_paid": 1, "lifetime_spent_cents": 1}
    assert not await handled(admin, created)
    assert not await handled(admin, cancelled)


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("refund of an order never counted", {"total_cents": 500}),
        ("payload users cannot read", {"user_id": "not-a-uuid"}),
        ("negative amount", {"total_cents": -5}),
    ],
)
async def test_event_that_can_never_apply_is_parked_at_once(
    service, orders, admin, stack, names, case, data
):
    user = await service.create("parked@example.com")
    kind = "order.refunded" if case.startswith("refund") else "order.paid"
    event = order_event(kind, user["id"])
    event = event.model_copy(update={"data": event.data | data})
    marker = order_event("order.paid", user["id"], 1)

    await publish_then_mark(orders, admin, event, marker=marker)

    dead_letters = names + "orders.events.dlt"
    [parked] = await read_records(
        stack.kafka_bootstrap, dead_letters, partitions=PARTITIONS, count=1
    )
    assert decode(parked.value).id == event.id
    assert header_map(parked)["x-error-type"] == "PermanentError"
    assert header_map(parked)["x-attempts"] == "1"  # parked at once, not retried
    assert not await handled(admin, event)  # so it can be replayed once fixed
    # The consumer moved on, and the parked event changed nothing.
    assert await stats(service, user["id"]) == {"orders_paid": 1, "lifetime_spent_cents": 1}
