"""The bus's own lifecycle: declaring a queue before its exchange exists, and a ping that asks the
broker."""

from __future__ import annotations

import asyncio
import re

import aio_pika
import pytest

from shared.rabbit import RabbitBus
from shared.rabbit.bus import QueueArgumentsDiffer
from tests.integration.rabbit.work_queue import (
    COMMANDS,
    EXCHANGE,
    FAST,
    KEY,
    QUEUE,
    delete_topology,
    depth_is,
    payment_requested,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


async def test_ping_asks_the_broker_and_fails_once_closed(amqp_url, names):
    bus = RabbitBus(amqp_url, prefix=names)
    await bus.start()
    await bus.ping()
    await bus.stop()

    with pytest.raises(ConnectionError):
        await bus.ping()


async def test_a_queue_is_bound_once_the_exchange_owner_declared_it(bus, raw, amqp_url, names):
    # The exchange is another service's, which may well start after this one.
    binding = asyncio.create_task(
        bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
    )
    await eventually(lambda: queue_exists(amqp_url, names + QUEUE), message="work queue declared")
    assert not binding.done()  # waiting for the exchange, not failing

    await bus.declare_exchange(EXCHANGE, "direct")  # its owner starts
    await asyncio.wait_for(binding, timeout=10)

    await bus.publish(COMMANDS, payment_requested())
    assert await eventually(lambda: depth_is(raw, names + QUEUE, 1))


async def test_a_queue_whose_exchange_never_comes_gives_up(amqp_url, names):
    async with RabbitBus(amqp_url, prefix=names, exchange_wait=1.0) as bus:
        with pytest.raises(TimeoutError, match=re.escape(names + EXCHANGE)):
            await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
    await delete_topology(amqp_url, names)


async def test_a_queue_left_with_other_arguments_is_named_with_the_remedy(bus, raw, names):
    # As an older version declared it: a classic queue, where this one declares a quorum queue.
    await raw.declare_queue(names + QUEUE, durable=True)
    await bus.declare_exchange(EXCHANGE, "direct")
    with pytest.raises(QueueArgumentsDiffer, match="x-queue-type") as refused:
        await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
    assert f"queue {names + QUEUE} exists with other arguments" in str(refused.value)
    assert "delete it, and start again" in str(refused.value)

    await raw.queue_delete(names + QUEUE)  # the remedy: the queue was empty
    await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
    await bus.publish(COMMANDS, payment_requested())
    assert await eventually(lambda: depth_is(raw, names + QUEUE, 1))


async def queue_exists(amqp_url: str, queue: str) -> bool:
    """A passive declare on a connection of its own: a missing queue closes the channel."""
    async with await aio_pika.connect(amqp_url) as connection:
        await (await connection.channel()).declare_queue(queue, passive=True)
    return True
