"""The work queue these tests use: its names, its declaration, messages for it, a recording
handler, and looks at queue depths and counters that bypass the adapter under test."""

from __future__ import annotations

import time
import uuid

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client import REGISTRY

from shared.channels import Channel
from shared.envelope import Envelope, new_envelope
from shared.errors import TransientError
from shared.rabbit import Delivery, RabbitBus, current_delivery, parking_queue, retry_queue
from shared.retry import RetryPolicy
from tests.support.eventually import eventually

EXCHANGE = "payments.commands"
QUEUE = "payments.payment-requests"
KEY = "payment.requested"
COMMANDS = Channel.rabbit(EXCHANGE, KEY)
FAST = RetryPolicy(delays=(0.05, 0.1))
SLOW = RetryPolicy(delays=(30.0,))  # longer than any test: the message stays parked in tier 1
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


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
