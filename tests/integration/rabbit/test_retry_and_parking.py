"""Failures: delayed retries by tier, outages waited out, parking with the reason, poison parked at
once, and nothing held up behind a message that fails."""

from __future__ import annotations

import aio_pika
import pytest

from shared.envelope import CONTENT_TYPE, Envelope, decode
from shared.errors import DependencyUnavailable, PermanentError, TransientError
from shared.rabbit import RabbitBus, parking_queue, retry_queue
from tests.integration.rabbit.work_queue import (
    COMMANDS,
    EXCHANGE,
    FAST,
    KEY,
    QUEUE,
    SLOW,
    TRACEPARENT,
    Recorder,
    counter,
    declare,
    delete_topology,
    depth,
    payment_requested,
    take,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


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
