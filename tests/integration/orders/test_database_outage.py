"""Orders while its database is out of reach: bad input is still the caller's 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.orders.conftest import Orders, serve_orders

pytestmark = pytest.mark.integration


@pytest.fixture
async def orders(
    stack, database, names, users_url, commands, database_proxy
) -> AsyncIterator[Orders]:
    """Orders reaching its database only through the proxy."""
    url = database_proxy.carrying(database.url("orders"))
    async for running in serve_orders(stack, database, names, users_url, database_url=url):
        yield running


async def test_bad_input_is_still_422_while_the_database_is_down(orders, database_proxy):
    """A request is validated before it asks for a connection: its caller learns what to fix,
    not that the database is away."""
    database_proxy.cut()
    malformed = [
        ("GET", "/api/v1/orders/not-a-uuid"),
        ("GET", "/api/v1/orders?user_id=42"),
        ("GET", "/api/v1/orders?page=0"),
        ("POST", "/api/v1/orders/not-a-uuid/cancel"),
    ]
    for method, path in malformed:
        response = await orders.http.request(method, path)
        assert response.status_code == 422, (method, path, response.text)
    # The database really is out of reach: good input is 503.
    assert (await orders.http.get(f"/api/v1/orders/{uuid.uuid4()}")).status_code == 503
    cancel = await orders.http.post(f"/api/v1/orders/{uuid.uuid4()}/cancel")
    assert cancel.status_code == 503
