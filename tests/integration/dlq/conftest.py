"""The payments work queue and a Kafka bus behind this test's names, and a plain channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from shared.kafka import KafkaBus
from shared.rabbit import RabbitBus, parking_queue
from shared.rabbit import topology as rabbit_topology
from tests.integration.dlq.parked import EXCHANGE, FAST, KEY, QUEUE
from tests.support.services import QUICK_GROUPS


@pytest.fixture
async def rabbit(stack, names) -> AsyncIterator[RabbitBus]:
    async with RabbitBus(stack.amqp_url, prefix=names, confirm_timeout=5.0) as bus:
        await bus.declare_exchange(EXCHANGE, "direct")
        await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
        yield bus
    async with await aio_pika.connect(stack.amqp_url) as connection:
        channel = await connection.channel()
        work = names + QUEUE
        for name in [work, parking_queue(work), *(rabbit_topology.retry_queue(work, d) for d in FAST.delays)]:  # fmt: skip
            await channel.queue_delete(name)
        await channel.exchange_delete(names + EXCHANGE)


@pytest.fixture
async def raw(stack) -> AsyncIterator[AbstractChannel]:
    """A plain channel: a robust one reports stale queue depths."""
    async with await aio_pika.connect(stack.amqp_url) as connection:
        yield await connection.channel()


@pytest.fixture
async def kafka(stack, names) -> AsyncIterator[KafkaBus]:
    async with KafkaBus(stack.kafka_bootstrap, prefix=names, group_timings=QUICK_GROUPS) as bus:
        yield bus
