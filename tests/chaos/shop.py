"""Customers and a payment provider that behave as real ones do while the system is hit.

A customer retries an order with the same idempotency key until it is acknowledged; the provider
re-sends one event with one webhook id until it is answered 2xx. Neither gives up before
GIVE_UP_AFTER, so a blow the system recovers from never costs an acknowledgement.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from switchyard.client import SwitchyardClient
from switchyard.webhook_sender import build_event, send_event
from tests.chaos.ledger import CANCELLED, FAILED, PAID, Ledger, Placed

GIVE_UP_AFTER = 120.0  # seconds one request is retried before the client calls it an outage
# A client's pause between two tries of one request, or two looks at an order: it grows, with
# jitter, as real clients' does, so hundreds of waiting customers do not keep a recovering
# service down.
FIRST_PAUSE, LONGEST_PAUSE = 0.2, 2.0


class GaveUp(Exception):
    """A request kept failing for GIVE_UP_AFTER seconds."""


def ending_of(n: int) -> str:
    """Most orders are paid; one in ten fails at the provider, one in twenty is cancelled first."""
    if n % 20 == 7:
        return CANCELLED
    return FAILED if n % 10 == 3 else PAID


class Shop:
    """Customers placing orders for a few users, and the provider answering for each payment."""

    def __init__(self, client: SwitchyardClient, ledger: Ledger, user_ids: list[str]) -> None:
        self.client, self.ledger, self.user_ids = client, ledger, user_ids
        self.urls = client.urls

    async def order(self, n: int) -> None:
        """One order from first request to its ending; a request given up is written down."""
        try:
            await self._order(n)
        except GaveUp as exc:
            self.ledger.gave_up.append(f"order #{n}: {exc}")

    async def _order(self, n: int) -> None:
        http, ending = self.client.http, ending_of(n)
        user_id = self.user_ids[n % len(self.user_ids)]
        body = {"user_id": user_id, "currency": "EUR",
                "items": [{"sku": f"SKU-{n}", "quantity": 1 + n % 3, "unit_price_cents": 100 + n}]}  # fmt: skip
        key = str(uuid.uuid4())  # the same key on every retry: placing is idempotent
        first_try = time.monotonic()
        response = await self._until(
            "order",
            lambda: http.post(
                f"{self.urls.orders}/api/v1/orders", json=body, headers={"Idempotency-Key": key}
            ),
            lambda r: r.status_code == 201,
        )
        order = response.json()
        self.ledger.acknowledged(
            Placed(order["id"], user_id, order["total_cents"], ending, first_try)
        )
        if ending == CANCELLED:
            await self._until(
                "cancel",
                lambda: http.post(f"{self.urls.orders}/api/v1/orders/{order['id']}/cancel"),
                # 409 when an earlier try cancelled it but its answer was lost; the watch below
                # still insists on `cancelled`.
                lambda r: r.status_code in (200, 409),
            )
        await self._payment(order, lambda p: True)  # the provider is asked before it answers
        said = "payment.failed" if ending == FAILED else "payment.succeeded"
        await self._provider_says(said, order)
        if ending == CANCELLED:  # paid after the cancel: orders asks for a refund, the PSP makes it
            await self._payment(order, lambda p: p["status"] == "refund_pending")
            await self._provider_says("payment.refunded", order)
            await self._payment(order, lambda p: p["status"] == "refunded")
        await self._until(
            "watch",
            lambda: http.get(f"{self.urls.orders}/api/v1/orders/{order['id']}"),
            lambda r: r.status_code == 200 and r.json()["status"] == ending,
        )
        self.ledger.ended(order["id"])

    async def _payment(self, order: dict, seen: Callable[[dict], bool]) -> None:
        await self._until(
            "watch",
            lambda: self.client.http.get(
                f"{self.urls.payments}/api/v1/payments", params={"order_id": order["id"]}
            ),
            lambda r: r.status_code == 200 and any(seen(p) for p in r.json()["items"]),
        )

    async def _provider_says(self, type: str, order: dict) -> None:
        failure = "card_declined" if type == "payment.failed" else None
        event = build_event(type, order["id"], order["total_cents"], "EUR", failure_reason=failure)
        webhook_id = f"msg_{uuid.uuid4().hex}"  # the provider re-sends one event with one id
        await self._until(
            "webhook",
            lambda: send_event(
                f"{self.urls.payments}/webhooks/psp",
                self.client.secret,
                event,
                msg_id=webhook_id,
                client=self.client.http,
            ),
            lambda r: r.is_success,
        )
        self.ledger.webhooks_answered += 1

    async def _until(
        self,
        kind: str,
        request: Callable[[], Awaitable[httpx.Response]],
        ok: Callable[[httpx.Response], bool],
    ) -> httpx.Response:
        """Ask until `ok`, as a client does; a transport error or a refusal is asked again."""
        deadline = time.monotonic() + GIVE_UP_AFTER
        last, pause = "no answer", FIRST_PAUSE
        while True:
            try:
                response = await request()
                if ok(response):
                    return response
                last = f"{response.status_code} {response.text[:200]}"
                if kind != "watch":
                    self.ledger.retries[kind] += 1
            except httpx.TransportError as exc:
                last = repr(exc)
                if kind != "watch":
                    self.ledger.retries[kind] += 1
            if time.monotonic() > deadline:
                raise GaveUp(f"{kind}: still failing after {GIVE_UP_AFTER:.0f}s: {last}")
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))  # a client's pace, not a wait
            pause = min(pause * 1.5, LONGEST_PAUSE)
