"""AMQP_URL may list several nodes: the bus connects to the first that answers."""

from __future__ import annotations

import pytest

from shared.rabbit import RabbitBus
from switchyard.stack.processes import free_port

pytestmark = pytest.mark.integration


async def test_a_bus_given_a_dead_node_first_connects_to_the_next(amqp_url, names):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there
    async with RabbitBus(f"{dead},{amqp_url}", prefix=names) as bus:
        await bus.ping()
        assert bus._connection is not None
        assert str(bus._connection.url) == amqp_url
