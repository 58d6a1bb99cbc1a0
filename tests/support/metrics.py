"""Reading one number off a service's `/metrics`, as Prometheus would scrape it."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def sample(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` on `/metrics`; 0 until it is first set.

    The in-process services share one registry, so a test reads a number before and after its
    own action and compares the two.
    """
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0
