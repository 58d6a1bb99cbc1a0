"""Two instances of every service share the work and still apply each payment exactly once."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from switchyard.client import StackUrls, SwitchyardClient
from tests.support.fleets import running_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDERS, USERS = 200, 20


@pytest.fixture(scope="module")
def pair(stack, template_database):
    yield from running_fleet(stack, template_database, instances=2)


def consumed(metrics_text: str) -> float:
    """Messages this process handled, over all channels."""
    pattern = r"^switchyard_messages_consumed_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(v) for v in re.findall(pattern, metrics_text, re.MULTILINE))


async def test_two_instances_each_share_the_work_and_pay_every_order_once(pair):
    names = [name for name in pair.processes if name.startswith("orders")]
    shops = [SwitchyardClient(StackUrls(pair.urls.users, pair.processes[n].url, pair.urls.payments))
             for n in names]  # fmt: skip
    try:
        users = [await shops[0].create_user() for _ in range(USERS)]
        gate = asyncio.Semaphore(20)

        async def one(i: int) -> dict:
            async with gate:
                shop = shops[i % 2]  # alternate the orders instance taking the POST
                order = await shop.place_order(users[i % USERS]["id"])
                await shop.wait_for(lambda: shop.payments_for(order["id"]), bool, timeout=60)
                response = await shop.provider_says("payment.succeeded", order)
                assert response.is_success, response.text
                return order

        orders = await asyncio.gather(*(one(i) for i in range(ORDERS)))
        for order in orders:
            await shops[0].wait_order(order["id"], "paid", timeout=60)

        for order in orders:
            payments = await shops[0].payments_for(order["id"])
            assert [p["status"] for p in payments] == ["succeeded"], order["id"]
        spent = {u["id"]: 0 for u in users}
        for order in orders:
            spent[order["user_id"]] += order["total_cents"]
        for user in users:
            stats = await shops[0].wait_for(
                lambda u=user: shops[0].get_user(u["id"]),
                lambda u: u["stats"]["orders_paid"] == ORDERS // USERS,
                timeout=30,
            )
            assert stats["stats"]["lifetime_spent_cents"] == spent[user["id"]]

        async with httpx.AsyncClient() as http:
            for name, process in pair.processes.items():
                metrics = (await http.get(f"{process.url}/metrics")).text
                assert consumed(metrics) > 0, f"{name} consumed nothing: the work was not shared"
    finally:
        for shop in shops:
            await shop.aclose()
