"""The dead letters these tests park: the real wiring's names, messages parked as the consumers
park them, and looks at queue depths that bypass the adapter under test."""

from __future__ import annotations

import uuid

import aio_pika
from aio_pika.abc import AbstractChannel

from shared import failure_headers as fh
from shared.envelope import CONTENT_TYPE, Envelope, encode, new_envelope
from shared.kafka import KafkaBus
from shared.rabbit import parking_queue
from shared.retry import RetryPolicy

# The real wiring's names, so `make status` and the CLI find them behind the test's prefix.
QUEUE, EXCHANGE, KEY = "payments.payment-requests", "payments.commands", "payment.requested"
TOPIC = "users.events"
FAST = RetryPolicy(delays=(0.05, 0.1))  # three attempts
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def event(kind: str = "payment.requested") -> Envelope:
    subject = str(uuid.uuid4())
    return new_envelope(type=kind, source="orders", subject=subject, data={"order_id": subject})


async def depth(raw: AbstractChannel, queue: str) -> int:
    return (await raw.declare_queue(queue, passive=True)).declaration_result.message_count


async def depth_is(raw: AbstractChannel, queue: str, expected: int) -> bool:
    return await depth(raw, queue) == expected


async def park_in_rabbit(raw: AbstractChannel, names: str, envelope: Envelope) -> None:
    """A message in the `.dlq` as the consumer parks it after three failed attempts."""
    headers = {
        fh.ORIGINAL_EXCHANGE: names + EXCHANGE,
        fh.ORIGINAL_ROUTING_KEY: KEY,
        fh.ATTEMPTS: 3,
        **fh.error_headers(RuntimeError("ledger unavailable")),
        fh.ORIGINAL_QUEUE: QUEUE,
        "traceparent": TRACEPARENT,
    }
    message = aio_pika.Message(
        encode(envelope), headers=headers, content_type=CONTENT_TYPE, message_id=envelope.id
    )
    await raw.default_exchange.publish(message, parking_queue(names + QUEUE))


async def park_in_kafka(kafka: KafkaBus, names: str, envelope: Envelope) -> None:
    """A record in the `.dlt` as the consumer parks it."""
    headers = [
        ("ce_id", envelope.id.encode()),
        *((k, v.encode()) for k, v in fh.error_headers(RuntimeError("stats table locked")).items()),
        (fh.ATTEMPTS, b"3"),
        (fh.ORIGINAL_TOPIC, (names + TOPIC).encode()),
        (fh.ORIGINAL_PARTITION, b"0"),
        (fh.ORIGINAL_OFFSET, b"0"),
    ]
    await kafka.producer.send(
        names + TOPIC + ".dlt", encode(envelope), key=envelope.subject.encode(), headers=headers
    )


async def delete_queue(url: str, queue: str) -> None:
    async with await aio_pika.connect(url) as connection:
        await (await connection.channel()).queue_delete(queue)
