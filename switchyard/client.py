"""A small client for the three services' HTTP APIs, shared by the demo and the load generator."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from switchyard.webhook_sender import build_event, send_event, signing_secret


class NotYet(Exception):
    """A waited-for state did not arrive in time."""


@dataclass(frozen=True)
class StackUrls:
    users: str = "http://127.0.0.1:8001"
    orders: str = "http://127.0.0.1:8002"
    payments: str = "http://127.0.0.1:8003"


class SwitchyardClient:
    """Drives one order through the system as a shop front-end and a payment provider would."""

    def __init__(self, urls: StackUrls = StackUrls(), *, secret: str | None = None, http=None):
        self.urls = urls
        self.secret = signing_secret(secret)
        self.http: httpx.AsyncClient = http or httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _ok(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise RuntimeError(f"{response.request.method} {response.request.url}: "
                               f"{response.status_code} {response.text}")  # fmt: skip
        return response.json() if response.content else None

    async def create_user(self, name: str = "Ada Lovelace", email: str | None = None) -> dict:
        email = email or f"ada.{uuid.uuid4().hex[:8]}@example.com"
        response = await self.http.post(
            f"{self.urls.users}/api/v1/users", json={"email": email, "name": name}
        )
        return await self._ok(response)

    async def get_user(self, user_id: str) -> dict:
        return await self._ok(await self.http.get(f"{self.urls.users}/api/v1/users/{user_id}"))

    async def place_order(
        self, user_id: str, items: list[dict] | None = None, currency: str = "EUR"
    ) -> dict:
        items = items or [{"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1250}]
        body = {"user_id": user_id, "currency": currency, "items": items}
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return await self._ok(
            await self.http.post(f"{self.urls.orders}/api/v1/orders", json=body, headers=headers)
        )

    async def get_order(self, order_id: str) -> dict:
        return await self._ok(await self.http.get(f"{self.urls.orders}/api/v1/orders/{order_id}"))

    async def payments_for(self, order_id: str) -> list[dict]:
        found = await self._ok(
            await self.http.get(
                f"{self.urls.payments}/api/v1/payments", params={"order_id": order_id}
            )
        )
        return found["items"] if isinstance(found, dict) else found

    async def provider_says(self, type: str, order: dict, **extra) -> httpx.Response:
        """Post the payment provider's signed webhook for `order`."""
        event = build_event(type, order["id"], extra.pop("amount_cents", order["total_cents"]),
                            extra.pop("currency", order["currency"]), **extra)  # fmt: skip
        return await send_event(
            f"{self.urls.payments}/webhooks/psp", self.secret, event, client=self.http
        )

    async def wait_for(self, fetch, done, timeout: float = 15.0, interval: float = 0.02):
        """Poll `fetch()` until `done(result)`; bounded, so a stuck flow fails loudly."""
        deadline = time.monotonic() + timeout
        while True:
            result = await fetch()
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise NotYet(f"gave up after {timeout:.0f}s; last seen: {result}")
            await asyncio.sleep(interval)

    async def wait_order(self, order_id: str, status: str, timeout: float = 15.0) -> dict:
        return await self.wait_for(
            lambda: self.get_order(order_id), lambda o: o["status"] == status, timeout
        )
