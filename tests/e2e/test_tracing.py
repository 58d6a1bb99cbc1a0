"""One trace follows an order through the service processes, read back from their JSON logs."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.eventually import eventually

pytestmark = pytest.mark.e2e


def handled(system, service: str, type: str, correlation_id: str) -> list[dict]:
    """The service's `message handled` log lines for `type` in this order's correlation."""
    lines = []
    for text in system.logs(service).splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue  # a line some library printed itself
        if (line.get("event"), line.get("type"), line.get("correlation_id")) == (
            "message handled",
            type,
            correlation_id,
        ):
            lines.append(line)
    return lines


async def test_the_trace_of_the_post_reaches_the_last_consumer_process(system, client):
    trace_id, correlation_id = uuid.uuid4().hex, f"corr-{uuid.uuid4()}"
    user = await client.create_user()
    response = await client.http.post(
        f"{client.urls.orders}/api/v1/orders",
        json={
            "user_id": user["id"],
            "currency": "EUR",
            "items": [{"sku": "MUG", "quantity": 1, "unit_price_cents": 900}],
        },
        headers={
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
            "X-Correlation-ID": correlation_id,
        },
    )
    assert response.status_code == 201, response.text
    order = response.json()
    await client.wait_for(lambda: client.payments_for(order["id"]), bool)
    # The provider's webhook is a request from outside, with no trace context of its own.
    assert (await client.provider_says("payment.succeeded", order)).is_success
    await client.wait_order(order["id"], "paid")

    for service, type in [
        ("payments", "payment.requested"),
        ("orders", "payment.succeeded"),
        ("users", "order.paid"),  # the last consumer, after both brokers and the webhook
    ]:
        (line,) = await eventually(
            lambda s=service, t=type: handled(system, s, t, correlation_id),
            message=f"{service} handled {type}",
        )
        assert line["trace_id"] == trace_id, (service, type)
