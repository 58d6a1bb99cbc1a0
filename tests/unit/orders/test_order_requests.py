"""Bad order requests are refused with a 4xx and details before anything else runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from orders.app import create_app
from orders.settings import OrdersSettings

pytestmark = pytest.mark.unit

GOOD = {
    "user_id": str(uuid.uuid4()),
    "currency": "EUR",
    "items": [{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}],
}
LINE = GOOD["items"][0]


def body(**changes) -> dict:
    return GOOD | changes


def line(**changes) -> dict:
    return body(items=[LINE | changes])


BAD = {
    "empty items": body(items=[]),
    "no items": {k: v for k, v in GOOD.items() if k != "items"},
    "quantity zero": line(quantity=0),
    "quantity negative": line(quantity=-1),
    "quantity as text": line(quantity="2"),
    "quantity fractional": line(quantity=1.5),
    "quantity boolean": line(quantity=True),
    "negative price": line(unit_price_cents=-1),
    "price as float": line(unit_price_cents=12.5),
    "price too large": line(unit_price_cents=10**13),
    "empty sku": line(sku=""),
    "unknown currency": body(currency="ABC"),
    "lower-case currency": body(currency="eur"),
    "precious metal": body(currency="XAU"),
    "malformed user id": body(user_id="not-a-uuid"),
    "missing user id": {k: v for k, v in GOOD.items() if k != "user_id"},
    "unknown field": body(discount=10),
    "unknown item field": line(colour="red"),
    "items not a list": body(items={"sku": "a"}),
    "body not an object": [GOOD],
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: validation refuses these requests before any server would be asked.
    app = create_app(OrdersSettings(_env_file=None, environment="test"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders.test") as http:
        yield http


@pytest.mark.parametrize("payload", BAD.values(), ids=BAD.keys())
async def test_bad_order_is_422_with_details(http, payload):
    r = await http.post("/api/v1/orders", json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["detail"], r.text


async def test_body_that_is_not_json_is_422(http):
    r = await http.post(
        "/api/v1/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "too long"])
async def test_bad_idempotency_key_is_422(http, key):
    r = await http.post("/api/v1/orders", json=GOOD, headers={"Idempotency-Key": key})
    assert r.status_code == 422, r.text


async def test_openapi_documents_every_order_route(http):
    spec = (await http.get("/openapi.json")).json()
    assert set(spec["paths"]) >= {
        "/api/v1/orders",
        "/api/v1/orders/{order_id}",
        "/api/v1/orders/{order_id}/cancel",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert (await http.get("/docs")).status_code == 200
