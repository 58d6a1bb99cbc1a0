"""Kill every service and crash every server mid-flow, then restart each: nothing is lost."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from switchyard.client import SwitchyardClient
from switchyard.stack.native import crash_and_restart
from switchyard.webhook_sender import build_event, send_event
from tests.support.eventually import eventually
from tests.support.fleets import running_fleet

# Six blows one after another, each waited out while customers keep coming: minutes, not seconds.
pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(480)]

ORDERS = 60  # at least; the stream goes on until the last disruption is over
GIVE_UP_AFTER = 120.0  # seconds a simulated client keeps retrying one request
SERVERS = ("rabbitmq", "kafka", "postgres")


@pytest.fixture(scope="module")
def chaos_system(stack, template_database):
    if stack.backend != "native":
        pytest.skip(f"crashing servers mid-test needs the native stack, not {stack.backend}")
    yield from running_fleet(stack, template_database)


async def _retrying(request, ok) -> httpx.Response:
    """What a real client does when a service is down: try again, with the same request."""
    deadline = time.monotonic() + GIVE_UP_AFTER
    while True:
        try:
            response = await request()
            if ok(response):
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("a request kept failing long after every service was back")
        await asyncio.sleep(0.2)  # a client's retry pace, not a wait for a condition


async def test_nothing_is_lost_when_services_die_and_servers_crash(chaos_system, stack, capsys):
    system = chaos_system
    shop = SwitchyardClient(system.urls, http=httpx.AsyncClient(timeout=5))
    urls = system.urls
    user = await shop.create_user()
    counts = {"order_retries": 0, "webhook_retries": 0, "paid_by_provider": 0}

    async def customer_and_provider(i: int) -> str:
        key = str(uuid.uuid4())  # the same key on every retry: placing is idempotent
        body = {"user_id": user["id"], "currency": "EUR",
                "items": [{"sku": f"SKU-{i}", "quantity": 1, "unit_price_cents": 100 + i}]}  # fmt: skip

        def placed(r: httpx.Response) -> bool:
            counts["order_retries"] += r.status_code != 201
            return r.status_code == 201

        response = await _retrying(
            lambda: shop.http.post(
                f"{urls.orders}/api/v1/orders", json=body, headers={"Idempotency-Key": key}
            ),
            placed,
        )
        order = response.json()
        await _retrying(
            lambda: shop.http.get(
                f"{urls.payments}/api/v1/payments", params={"order_id": order["id"]}
            ),
            lambda r: r.status_code == 200 and r.json()["items"],
        )
        event = build_event("payment.succeeded", order["id"], order["total_cents"], "EUR")
        webhook_id = f"msg_{uuid.uuid4().hex}"  # the provider re-sends one event with one id

        def delivered(r: httpx.Response) -> bool:
            counts["webhook_retries"] += not r.is_success
            return r.is_success

        await _retrying(
            lambda: send_event(
                f"{urls.payments}/webhooks/psp",
                shop.secret,
                event,
                msg_id=webhook_id,
                client=shop.http,
            ),
            delivered,
        )
        counts["paid_by_provider"] += 1
        return order["id"]

    async def flowing_again() -> None:
        """Between blows, wait until the system has carried more orders all the way through."""
        mark = counts["paid_by_provider"]
        await eventually(lambda: counts["paid_by_provider"] >= mark + 5, timeout=60)

    async def disruptions() -> float:
        for name in ("users", "orders", "payments"):
            await flowing_again()
            system.kill(name)
            await asyncio.to_thread(system.start, name)
        for server in SERVERS:  # SIGKILL, then started again on the same data
            await flowing_again()
            await asyncio.to_thread(crash_and_restart, stack, server)
        return time.monotonic()

    started = time.monotonic()
    chaos = asyncio.create_task(disruptions())
    flows = []
    while len(flows) < ORDERS or not chaos.done():  # customers keep coming through every blow
        flows.append(asyncio.create_task(customer_and_provider(len(flows))))
        await asyncio.sleep(0.1)  # a steady stream of customers, about ten a second
    calm_since = await chaos  # a blow that could not be dealt fails the test here, at once
    order_ids = await asyncio.gather(*flows)

    for order_id in order_ids:
        await shop.wait_order(order_id, "paid", timeout=90)
    recovered = time.monotonic()
    for order_id in order_ids:
        payments = await shop.payments_for(order_id)
        assert [p["status"] for p in payments] == ["succeeded"], order_id
    placed = len(order_ids)
    expected = sum(100 + i for i in range(placed))
    final = await shop.wait_for(
        lambda: shop.get_user(user["id"]), lambda u: u["stats"]["orders_paid"] >= placed, timeout=60
    )
    await shop.aclose()
    assert final["stats"] == {"orders_paid": placed, "lifetime_spent_cents": expected}
    assert len(set(order_ids)) == placed

    with capsys.disabled():
        print(
            f"\nchaos: {placed} orders, 3 services SIGKILLed and restarted, "
            f"{', '.join(SERVERS)} crashed and restarted; "
            f"{placed} paid exactly once; {counts['order_retries']} order retries, "
            f"{counts['webhook_retries']} webhook retries; all paid {recovered - calm_since:.1f}s "
            f"after the last disruption ({recovered - started:.1f}s in all)"
        )
