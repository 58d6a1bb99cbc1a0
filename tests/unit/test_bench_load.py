"""The load generator's closed loop: an order in flight is released when its `order.paid` arrives."""

from __future__ import annotations

import asyncio

import pytest

from bench.load import Paid

pytestmark = pytest.mark.unit


async def test_a_waiter_is_released_by_the_order_being_paid():
    paid = Paid()
    waiting = asyncio.create_task(paid.wait("order-1"))
    await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()

    paid.record("order-2")
    await asyncio.sleep(0)
    assert not waiting.done()  # another order's payment releases nothing

    paid.record("order-1")
    await asyncio.wait_for(waiting, 1)
    assert set(paid.at) == {"order-1", "order-2"}


async def test_an_order_paid_before_anyone_waits_does_not_block():
    paid = Paid()
    paid.record("order-1")
    await asyncio.wait_for(paid.wait("order-1"), 1)


async def test_a_repeated_paid_event_keeps_the_first_time():
    paid = Paid()
    paid.record("order-1")
    first = paid.at["order-1"]
    paid.record("order-1")
    assert paid.at["order-1"] == first
