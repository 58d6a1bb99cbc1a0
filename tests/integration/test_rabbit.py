"""The RabbitMQ adapter against a real broker: confirms, acks, redelivery, retries and parking."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client import REGISTRY

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE, Envelope, decode, new_envelope
from shared.errors import DependencyUnavailable, PermanentError, PublishError, TransientError
from shared.rabbit import Delivery, RabbitBus, current_delivery, parking_queue, retry_queue
from shared.retry import RetryPolicy
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = "payments.commands"
QUEUE = "payments.payment-requests"
KEY = "payment.requested"
COMMANDS = Channel.rabbit(EXCHANGE, KEY)
FAST = RetryPolicy(delays=(0.05, 0.1))
SLOW = RetryPolicy(delays=(30.0,))  # longer than any test: the message stays parked in tier 1
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


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


async def delete_topology(url: str, prefix: str) -> None:
    """Drop what these tests declare; deleting a queue that does not exist is not an error."""
    work = prefix + QUEUE
    tiers = {*FAST.delays, *SLOW.delays}
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        for name in [work, parking_queue(work), *(retry_queue(work, d) for d in tiers)]:
            await channel.queue_delete(name)
        await channel.exchange_delete(prefix + EXCHANGE)


async def declare(bus: RabbitBus, retry: RetryPolicy = FAST, **queue: int) -> None:
    await bus.declare_exchange(EXCHANGE, "direct")
    await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=retry, **queue)


def payment_requested(amount_cents: int = 1250) -> Envelope:
    order_id = str(uuid.uuid4())
    return new_envelope(
        type="payment.requested",
        source="orders",
        subject=order_id,
        data={"order_id": order_id, "amount_cents": amount_cents, "currency": "EUR"},
    )


class Recorder:
    """A handler that remembers each call and fails the first `failures` of them."""

    def __init__(self, failures: int = 0, error: type[Exception] = TransientError) -> None:
        self.failures = failures
        self.error = error
        self.calls: list[tuple[Envelope, Delivery, float]] = []

    async def __call__(self, envelope: Envelope) -> None:
        self.calls.append((envelope, current_delivery(), time.monotonic()))
        if len(self.calls) <= self.failures:
            raise self.error(f"ledger unavailable (call {len(self.calls)})")

    @property
    def attempts(self) -> list[int]:
        return [delivery.attempt for _, delivery, _ in self.calls]


async def depth(raw: AbstractChannel, queue: str) -> int:
    declared = await raw.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count


async def depth_is(raw: AbstractChannel, queue: str, expected: int) -> bool:
    return await depth(raw, queue) == expected


async def take(raw: AbstractChannel, queue: str) -> AbstractIncomingMessage:
    """The next message on `queue`, waiting for it to arrive."""
    amqp_queue = await raw.get_queue(queue)
    return await eventually(lambda: amqp_queue.get(no_ack=True, fail=False), message=queue)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"broker": "rabbit", "channel": QUEUE}) or 0.0


async def test_published_message_carries_cloudevents_properties(bus, raw, names):
    await declare(bus)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope, headers={"traceparent": TRACEPARENT})

    message = await take(raw, names + QUEUE)
    assert message.content_type == CONTENT_TYPE == "application/cloudevents+json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == envelope.id
    assert message.type == "payment.requested"
    assert message.correlation_id == envelope.correlationid
    assert message.headers["traceparent"] == TRACEPARENT
    assert message.routing_key == KEY
    assert decode(message.body) == envelope


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


async def test_transient_failure_is_retried_after_a_delay_then_succeeds(bus, raw, names):
    await declare(bus, FAST)
    retried_before = counter("switchyard_messages_retried_total")
    handler = Recorder(failures=2)
    await bus.consume(QUEUE, handler, retry=FAST)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope)

    await eventually(lambda: len(handler.calls) == 3, message="three attempts")
    assert handler.attempts == [1, 2, 3]
    assert all(received == envelope for received, _, _ in handler.calls)
    assert all(delivery.routing_key == KEY for _, delivery, _ in handler.calls)
    times = [at for _, _, at in handler.calls]
    # Each retry waited at least its tier's TTL (50 ms, then 100 ms) in a retry queue.
    assert times[1] - times[0] >= 0.05
    assert times[2] - times[1] >= 0.1
    assert counter("switchyard_messages_retried_total") - retried_before == 2
    assert await depth(raw, parking_queue(names + QUEUE)) == 0


async def test_a_database_outage_is_waited_out_and_never_parks(bus, raw, names):
    await declare(bus, FAST)
    retried_before = counter("switchyard_messages_retried_total")
    outage = len(FAST.delays) + 3  # longer than the message's whole retry budget
    handler = Recorder(failures=outage, error=DependencyUnavailable)
    await bus.consume(QUEUE, handler, retry=FAST)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope)

    await eventually(lambda: len(handler.calls) == outage + 1, message="handled after the outage")
    assert handler.attempts == [1] * (outage + 1)  # an outage uses up none of its attempts
    assert counter("switchyard_messages_retried_total") == retried_before
    assert await depth(raw, parking_queue(names + QUEUE)) == 0


async def test_persistent_failure_is_parked_with_its_reason_after_every_attempt(bus, raw, names):
    await declare(bus, FAST)
    parked_before = counter("switchyard_messages_dead_lettered_total")
    handler = Recorder(failures=1_000, error=RuntimeError)
    await bus.consume(QUEUE, handler, retry=FAST)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope, headers={"traceparent": TRACEPARENT})

    parked = await take(raw, parking_queue(names + QUEUE))
    assert handler.attempts == [1, 2, 3]  # first try plus one retry per tier
    assert parked.headers["x-error-type"] == "RuntimeError"
    assert "ledger unavailable (call 3)" in parked.headers["x-error-message"]
    assert parked.headers["x-attempts"] == 3
    assert parked.headers["x-original-queue"] == QUEUE
    assert parked.headers["x-original-routing-key"] == KEY
    assert parked.headers["x-original-exchange"] == names + EXCHANGE
    assert parked.headers["traceparent"] == TRACEPARENT
    assert parked.message_id == envelope.id
    assert parked.content_type == CONTENT_TYPE
    assert decode(parked.body) == envelope
    assert counter("switchyard_messages_dead_lettered_total") - parked_before == 1


async def test_permanent_error_is_parked_at_once(bus, raw, names):
    await declare(bus, FAST)
    handler = Recorder(failures=1_000, error=PermanentError)
    await bus.consume(QUEUE, handler, retry=FAST)

    await bus.publish(COMMANDS, payment_requested())

    parked = await take(raw, parking_queue(names + QUEUE))
    assert handler.attempts == [1]
    assert parked.headers["x-error-type"] == "PermanentError"
    assert parked.headers["x-attempts"] == 1


@pytest.mark.parametrize(
    "body", [b"\x00not json at all", b'{"order_id": "o-1", "amount_cents": 100}'],
    ids=["not-json", "json-but-not-an-envelope"],
)  # fmt: skip
async def test_poison_message_is_parked_at_once(bus, raw, names, body):
    await declare(bus, FAST)
    handler = Recorder()
    await bus.consume(QUEUE, handler, retry=FAST)
    exchange = await raw.get_exchange(names + EXCHANGE)

    await exchange.publish(aio_pika.Message(body, message_id="poison-1"), KEY)

    parked = await take(raw, parking_queue(names + QUEUE))
    assert parked.body == body
    assert parked.message_id == "poison-1"
    assert parked.headers["x-error-type"] == "MalformedMessage"
    assert parked.headers["x-attempts"] == 1
    assert handler.calls == []


async def test_poison_and_failing_messages_do_not_hold_up_the_ones_behind(amqp_url, raw, names):
    failing = payment_requested(amount_cents=13)
    good = [payment_requested() for _ in range(5)]

    async def handler(envelope: Envelope) -> None:
        if envelope.id == failing.id:
            raise TransientError("provider timeout")
        handled.append(envelope.id)

    handled: list[str] = []
    # Prefetch 1: a message that is neither acked nor moved aside would block the queue.
    async with RabbitBus(amqp_url, prefix=names, prefetch=1) as bus:
        await declare(bus, SLOW)
        exchange = await raw.get_exchange(names + EXCHANGE)
        await exchange.publish(aio_pika.Message(b"poison"), KEY)
        await bus.publish(COMMANDS, failing)
        for envelope in good:
            await bus.publish(COMMANDS, envelope)
        await bus.consume(QUEUE, handler, retry=SLOW)

        await eventually(lambda: len(handled) == len(good), message="good messages handled")
        assert handled == [envelope.id for envelope in good]
        assert await depth(raw, parking_queue(names + QUEUE)) == 1
        # The failing message waits out its 30 s delay aside, not at the head of the work queue.
        assert await depth(raw, retry_queue(names + QUEUE, SLOW.delays[0])) == 1
    await delete_topology(amqp_url, names)


async def test_confirmed_publish_to_a_missing_exchange_raises(bus, raw, names):
    await declare(bus)

    with pytest.raises(PublishError, match="NOT_FOUND"):
        await bus.publish(Channel.rabbit("payments.nowhere", KEY), payment_requested())

    # The broker closed the channel over it; the bus reopens it and keeps publishing.
    await bus.publish(COMMANDS, payment_requested())
    assert await eventually(lambda: depth_is(raw, names + QUEUE, 1))


async def test_unroutable_message_raises(bus):
    await declare(bus)

    with pytest.raises(PublishError, match="unroutable"):
        await bus.publish(Channel.rabbit(EXCHANGE, "payment.nobody-listens"), payment_requested())


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


async def test_requeue_loop_is_parked_by_the_delivery_limit(bus, raw, names):
    # A message that kills every consumer comes back forever unless the broker counts deliveries.
    await declare(bus, FAST, delivery_limit=2)
    envelope = payment_requested()
    await bus.publish(COMMANDS, envelope)
    queue = await raw.get_queue(names + QUEUE)

    for _ in range(3):
        message = await eventually(lambda: queue.get(fail=False))
        await message.nack(requeue=True)

    parked = await take(raw, parking_queue(names + QUEUE))
    assert parked.message_id == envelope.id
    assert parked.headers["x-death"][0]["reason"] == "delivery_limit"


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


async def queue_exists(amqp_url: str, queue: str) -> bool:
    """A passive declare on a connection of its own: a missing queue closes the channel."""
    async with await aio_pika.connect(amqp_url) as connection:
        await (await connection.channel()).declare_queue(queue, passive=True)
    return True
