"""The sagas across three services and both brokers, against the services as real processes."""

from __future__ import annotations

import uuid

import pytest

from switchyard.stack.taps import kafka_tap, rabbit_tap
from tests.e2e.lifetime_stats import MARKER_CENTS, stats_after_orders_is_done
from tests.support.eventually import eventually

pytestmark = pytest.mark.e2e


async def _awaiting_payment(client, order):
    payments = await client.wait_for(lambda: client.payments_for(order["id"]), bool)
    assert payments[0]["status"] == "awaiting_confirmation"
    return payments[0]


async def test_paid_order_updates_the_users_lifetime_stats(client):
    user = await client.create_user()
    order = await client.place_order(user["id"])
    assert order["status"] == "pending_payment"
    await _awaiting_payment(client, order)

    response = await client.provider_says("payment.succeeded", order)
    assert response.is_success, response.text

    paid = await client.wait_order(order["id"], "paid")
    assert paid["total_cents"] == order["total_cents"]
    stats = await client.wait_for(
        lambda: client.get_user(user["id"]), lambda u: u["stats"]["orders_paid"] == 1
    )
    assert stats["stats"]["lifetime_spent_cents"] == order["total_cents"]
    (payment,) = await client.payments_for(order["id"])
    assert payment["status"] == "succeeded"


async def test_failed_payment_fails_the_order_and_announces_the_cancellation(system, client):
    topic = f"{system.prefix}orders.events"
    async with kafka_tap(system.endpoints.kafka_bootstrap, topic) as orders_events:
        user = await client.create_user()
        order = await client.place_order(user["id"])
        await _awaiting_payment(client, order)

        response = await client.provider_says(
            "payment.failed", order, failure_reason="card_declined"
        )
        assert response.is_success, response.text

        await client.wait_order(order["id"], "payment_failed")
        (cancelled,) = await eventually(lambda: orders_events.of(order["id"], "order.cancelled"))
    assert "card_declined" in cancelled.data["reason"]
    (payment,) = await client.payments_for(order["id"])
    assert payment["status"] == "failed"
    stats = await stats_after_orders_is_done(
        system, client, user["id"], order["id"], "payment.failed"
    )
    assert stats == {"orders_paid": 1, "lifetime_spent_cents": MARKER_CENTS}  # the marker alone


async def test_success_after_cancel_is_refunded_and_the_order_stays_cancelled(system, client):
    commands = f"{system.prefix}payments.commands"
    async with rabbit_tap(system.endpoints.amqp_url, commands, "payment.refund_requested") as tap:
        user = await client.create_user()
        order = await client.place_order(user["id"])
        await _awaiting_payment(client, order)
        cancelled = await client.http.post(
            f"{client.urls.orders}/api/v1/orders/{order['id']}/cancel"
        )
        assert cancelled.status_code == 200, cancelled.text

        late = await client.provider_says("payment.succeeded", order)
        assert late.is_success, late.text
        await eventually(lambda: tap.of(order["id"], "payment.refund_requested"))

    payment = await client.wait_for(
        lambda: client.payments_for(order["id"]), lambda p: p[0]["status"] == "refund_pending"
    )
    assert payment[0]["amount_cents"] == order["total_cents"]
    refunded = await client.provider_says("payment.refunded", order)
    assert refunded.is_success, refunded.text
    await client.wait_for(
        lambda: client.payments_for(order["id"]), lambda p: p[0]["status"] == "refunded"
    )
    assert (await client.get_order(order["id"]))["status"] == "cancelled"
    stats = await stats_after_orders_is_done(
        system, client, user["id"], order["id"], "payment.refunded"
    )
    assert stats == {"orders_paid": 1, "lifetime_spent_cents": MARKER_CENTS}  # the marker alone


async def test_deleting_a_user_cancels_their_open_orders_only(client):
    leaving, staying = await client.create_user(), await client.create_user()
    open_orders = [await client.place_order(leaving["id"]) for _ in range(2)]
    others = await client.place_order(staying["id"])
    for order in [*open_orders, others]:
        await _awaiting_payment(client, order)

    deleted = await client.http.delete(f"{client.urls.users}/api/v1/users/{leaving['id']}")
    assert deleted.status_code == 204

    for order in open_orders:
        await client.wait_order(order["id"], "cancelled")
    assert (await client.get_order(others["id"]))["status"] == "pending_payment"
    gone = await client.http.get(f"{client.urls.users}/api/v1/users/{leaving['id']}")
    assert gone.status_code == 404


async def test_one_correlation_id_follows_an_order_across_services_and_brokers(system, client):
    correlation = f"corr-{uuid.uuid4()}"
    p = system.prefix
    async with (
        kafka_tap(system.endpoints.kafka_bootstrap, f"{p}orders.events") as orders_events,
        rabbit_tap(
            system.endpoints.amqp_url, f"{p}payments.commands", "payment.requested"
        ) as commands,
        rabbit_tap(system.endpoints.amqp_url, f"{p}payments.events") as payment_events,
    ):
        user = await client.create_user()
        response = await client.http.post(
            f"{client.urls.orders}/api/v1/orders",
            json={
                "user_id": user["id"],
                "currency": "EUR",
                "items": [{"sku": "MUG", "quantity": 1, "unit_price_cents": 900}],
            },
            headers={"X-Correlation-ID": correlation},
        )
        assert response.status_code == 201, response.text
        order = response.json()
        await _awaiting_payment(client, order)
        assert (await client.provider_says("payment.succeeded", order)).is_success
        await client.wait_order(order["id"], "paid")

        (created,) = await eventually(lambda: orders_events.of(order["id"], "order.created"))
        (requested,) = await eventually(lambda: commands.of(order["id"], "payment.requested"))
        (succeeded,) = await eventually(lambda: payment_events.of(order["id"], "payment.succeeded"))
        (paid,) = await eventually(lambda: orders_events.of(order["id"], "order.paid"))

    for event in (created, requested, succeeded, paid):
        assert event.correlationid == correlation, event
    assert paid.causationid == succeeded.id  # orders paid the order because of that event
    # users handled order.paid under the same correlation id (its log lines carry it).
    await eventually(lambda: correlation in system.logs("users"), message="users logged the order")
