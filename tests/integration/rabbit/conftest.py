"""A bus with this test's own names on the real broker, and a plain channel to look behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from shared.rabbit import RabbitBus
from tests.integration.rabbit.work_queue import delete_topology


@pytest.fixture(scope="session")
def amqp_url(stack) -> str:
    return stack.amqp_url


@pytest.fixture
async def bus(amqp_url: str, names: str) -> AsyncIterator[RabbitBus]:
    async with RabbitBus(amqp_url, prefix=names, confirm_timeout=5.0) as bus:
        yield bus
    await delete_topology(amqp_url, names)


@pytest.fixture
async def raw(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    """A plain (not robust) channel: a robust one reports stale queue depths."""
    async with await aio_pika.connect(amqp_url) as connection:
        yield await connection.channel()
