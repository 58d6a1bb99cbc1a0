"""Delivery to consumers: ack after the handler, redelivery when a consumer rejects or dies, and a
graceful stop that finishes the message in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from shared.envelope import Envelope
from tests.integration.rabbit.work_queue import (
    COMMANDS,
    FAST,
    KEY,
    QUEUE,
    TRACEPARENT,
    Recorder,
    declare,
    depth,
    depth_is,
    payment_requested,
    take,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]  # the repository: where `-m tests...` runs


async def test_round_trip_keeps_envelope_and_headers(bus, raw, names):
    await declare(bus)
    handler = Recorder()
    consumer = await bus.consume(QUEUE, handler, retry=FAST)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope, headers={"traceparent": TRACEPARENT})

    await eventually(lambda: handler.calls, message="message handled")
    await consumer.stop()
    received, delivery, _ = handler.calls[0]
    assert received == envelope
    assert delivery.headers["traceparent"] == TRACEPARENT
    assert (delivery.queue, delivery.routing_key, delivery.attempt) == (QUEUE, KEY, 1)
    assert not delivery.redelivered
    # Acked, not merely delivered: an unacked message would be back at the head of the queue,
    # ahead of one published after the consumer stopped.
    marker = payment_requested()
    await bus.publish(COMMANDS, marker)
    assert (await take(raw, names + QUEUE)).message_id == marker.id


async def test_reject_with_requeue_sets_redelivered(bus, raw, names):
    await declare(bus)
    await bus.publish(COMMANDS, payment_requested())
    queue = await raw.get_queue(names + QUEUE)

    first = await eventually(lambda: queue.get(fail=False))
    assert not first.redelivered
    await first.reject(requeue=True)

    again = await eventually(lambda: queue.get(fail=False))
    assert again.redelivered
    assert again.message_id == first.message_id
    await again.ack()


async def test_message_of_a_killed_consumer_process_is_delivered_again(bus, amqp_url, names):
    await declare(bus)
    envelope = payment_requested()
    await bus.publish(COMMANDS, envelope)
    consumer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.rabbit_consumer", amqp_url, names, QUEUE,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output = await asyncio.wait_for(_line_starting(consumer, "received "), timeout=30)
        assert output == f"received {envelope.id}"
    finally:
        os.kill(consumer.pid, signal.SIGKILL)
        await consumer.wait()

    handler = Recorder()
    await bus.consume(QUEUE, handler, retry=FAST)

    await eventually(lambda: handler.calls, message="redelivery to the second consumer")
    received, delivery, _ = handler.calls[0]
    assert received.id == envelope.id
    assert delivery.redelivered


async def _line_starting(process: asyncio.subprocess.Process, prefix: str) -> str:
    seen: list[str] = []
    while line := (await process.stdout.readline()).decode():
        if line.startswith(prefix):
            return line.strip()
        seen.append(line)
    raise AssertionError("consumer process ended early:\n" + "".join(seen))


async def test_graceful_stop_finishes_the_in_flight_handler_and_acks_it(bus, raw, names):
    await declare(bus)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(envelope: Envelope) -> None:
        started.set()
        await release.wait()
        finished.append(envelope.id)

    consumer = await bus.consume(QUEUE, slow, retry=FAST)
    in_flight, later = payment_requested(), payment_requested()
    await bus.publish(COMMANDS, in_flight)
    await eventually(started.is_set, message="handler started")

    stopping = asyncio.create_task(consumer.stop())
    await eventually(lambda: consumer.draining, message="consumer cancelled at the broker")
    await bus.publish(COMMANDS, later)
    await eventually(lambda: depth_is(raw, names + QUEUE, 1), message="later stays queued")
    assert not stopping.done()
    assert finished == []

    release.set()
    await stopping

    assert finished == [in_flight.id]
    # The in-flight message was acked; only the one that arrived during the stop is left.
    assert await depth(raw, names + QUEUE) == 1
    assert (await take(raw, names + QUEUE)).message_id == later.id
