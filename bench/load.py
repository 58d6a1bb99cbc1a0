"""The load generator: customers posting orders, and a simulated payment provider answering them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from switchyard.stack.fleet import Fleet
from switchyard.stack.taps import Tap
from switchyard.webhook_sender import build_event, signed_request, signing_secret

TIMEOUT = aiohttp.ClientTimeout(total=30)
KEEPALIVE_SECONDS = 4.0  # below uvicorn's 5 s, so no request meets a connection being closed
WEBHOOK_ATTEMPTS = 5


@dataclass
class Paid:
    """When each order's `order.paid` reached Kafka, and what the provider failed to deliver."""

    at: dict[str, float] = field(default_factory=dict)
    webhook_retries: list[str] = field(default_factory=list)  # why each failed attempt failed
    webhook_failures: list[str] = field(default_factory=list)  # given up after every attempt
    # What payments answered each delivered webhook: `applied`, or `pending` when it came before
    # payments had taken the order's `payment.requested` (then applied by that command).
    webhook_outcomes: Counter[str] = field(default_factory=Counter)
    _waiting: dict[str, asyncio.Future[None]] = field(default_factory=dict, init=False, repr=False)

    def record(self, order_id: str, at: float | None = None) -> None:
        """`order_id` was paid `at` (epoch seconds; now if not given)."""
        self.at.setdefault(order_id, time.time() if at is None else at)
        if (waiter := self._waiting.pop(order_id, None)) and not waiter.done():
            waiter.set_result(None)

    async def wait(self, order_id: str) -> None:
        """Until the order is paid (at once if it already is)."""
        if order_id not in self.at:
            await self._waiting.setdefault(order_id, asyncio.get_running_loop().create_future())


@dataclass
class Posted:
    """When each order of one phase was posted, and the posts that failed."""

    at: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def create_users(fleet: Fleet, count: int) -> list[dict]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        users = []
        for i in range(count):
            body = {"email": f"bench.{uuid.uuid4().hex[:8]}.{i}@example.com", "name": f"Bench {i}"}
            async with http.post(f"{fleet.urls.users}/api/v1/users", json=body) as response:
                response.raise_for_status()
                users.append(await response.json())
        return users


async def provider(fleet: Fleet, orders_events: Tap, paid: Paid) -> None:
    """The simulated PSP: every order created is paid, with a signed webhook.

    It hears of each order on the tap of `orders.events` that also sees it paid, at about the
    time the order's `payment.requested` leaves for payments (orders relays both in the same
    round). A queue of its own on the commands exchange would hold a copy of every
    `payment.requested`, which the system itself does not make: 0.3 ms of RabbitMQ's CPU a
    message measured alone, 0.2-0.3 ms an order in `make bench` (bench/README.md, "A tenth
    round").
    """
    secret, url = signing_secret(), f"{fleet.urls.payments}/webhooks/psp"
    pending: set[asyncio.Task] = set()
    answered: set[str] = set()
    connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:

        async def confirm(data: dict) -> None:
            """Deliver one webhook, retrying as a real provider does, with the same webhook id."""
            event = build_event(
                "payment.succeeded", data["order_id"], data["total_cents"], data["currency"]
            )
            msg_id = f"msg_{uuid.uuid4().hex}"
            for attempt in range(WEBHOOK_ATTEMPTS):
                body, headers = signed_request(secret, event, msg_id)
                try:
                    async with http.post(url, data=body, headers=headers) as response:
                        if response.status < 300:
                            paid.webhook_outcomes[(await response.json())["outcome"]] += 1
                            return
                        outcome = f"{response.status} {(await response.text())[:200]}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = repr(exc)
                paid.webhook_retries.append(outcome)
                await asyncio.sleep(0.05 * 2**attempt)
            paid.webhook_failures.append(outcome)

        async for event in orders_events.follow():
            # The relay publishes at least once: a second copy of an order is not a second payment.
            if event.type != "order.created" or event.data["order_id"] in answered:
                continue
            answered.add(event.data["order_id"])
            task = asyncio.create_task(confirm(event.data))
            pending.add(task)
            task.add_done_callback(pending.discard)


async def watch_paid(tap, paid: Paid) -> None:
    """An order is paid when orders sends its `order.paid` to Kafka: the record's timestamp, so
    the tap's own fetch wait is not part of the figure."""
    async for event in tap.follow():
        if event.type == "order.paid":
            paid.record(event.subject, tap.sent_at.get(event.id))


async def post_orders(
    fleet: Fleet,
    posted: Posted,
    paid: Paid,
    orders: int,
    users: list[dict],
    *,
    rate_per_s: float | None,
    concurrency: int,
    progress: Callable[[], None],
) -> None:
    """POST orders at a fixed offered rate (open loop), or keep `concurrency` orders between
    their POST and `paid` (closed loop: a new order goes in when one is paid)."""
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=KEEPALIVE_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = {
                "user_id": users[i % len(users)]["id"],
                "currency": "EUR",
                "items": [{"sku": f"SKU-{i % 97}", "quantity": 1 + i % 3, "unit_price_cents": 499}],
            }
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            async with gate:
                started = time.time()  # the same clock as the Kafka record timestamps
                try:
                    url = f"{fleet.urls.orders}/api/v1/orders"
                    async with http.post(url, json=body, headers=headers) as response:
                        if response.status != 201:
                            text = await response.text()
                            posted.failures.append(f"{response.status} {text[:200]}")
                            return
                        order = await response.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    posted.failures.append(repr(exc))
                    return
                posted.at[order["id"]] = started
                progress()
                if not rate_per_s:
                    await paid.wait(order["id"])

        tasks = []
        started = time.perf_counter()
        for i in range(orders):
            tasks.append(asyncio.create_task(one(i)))
            if rate_per_s:  # keep to the schedule, however long creating a task took
                await asyncio.sleep(max(0.0, started + (i + 1) / rate_per_s - time.perf_counter()))
        await asyncio.gather(*tasks)
