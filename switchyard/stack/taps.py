"""Listening in on the real brokers: every record of a topic, every message on an exchange."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aiokafka import AIOKafkaConsumer

from shared.envelope import Envelope, decode


class Tap:
    """Envelopes seen so far, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[Envelope] = []
        # Envelope id -> when its producer sent it (epoch seconds), where the broker records it.
        self.sent_at: dict[str, float] = {}
        self._arrived = asyncio.Event()

    def add(self, envelope: Envelope, sent_at: float | None = None) -> None:
        self.seen.append(envelope)
        if sent_at is not None:
            self.sent_at[envelope.id] = sent_at
        self._arrived.set()

    async def follow(self) -> AsyncIterator[Envelope]:
        """Every envelope from the first, each as soon as it arrives (no polling)."""
        index = 0
        while True:
            while index < len(self.seen):
                yield self.seen[index]
                index += 1
            self._arrived.clear()
            await self._arrived.wait()

    def of(self, subject: str, type: str | None = None) -> list[Envelope]:
        return [e for e in self.seen if e.subject == subject and (type is None or e.type == type)]


@asynccontextmanager
async def kafka_tap(bootstrap: str, topic: str) -> AsyncIterator[Tap]:
    """Read `topic` from the beginning, without a group, for as long as the block runs."""
    tap = Tap()
    # A fetch returns as soon as a record arrives, whatever its longest wait: the default wait
    # (500 ms) only paces polling while nothing comes, which otherwise costs the broker CPU.
    # Metadata every second: the topic may be created after the tap starts.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, metadata_max_age_ms=1000)  # fmt: skip
    await consumer.start()

    async def pump() -> None:
        async for record in consumer:
            # The record's own timestamp, not the moment the fetch returned.
            tap.add(decode(record.value), sent_at=record.timestamp / 1000)

    task = asyncio.create_task(pump())
    try:
        yield tap
    finally:
        task.cancel()
        await consumer.stop()


@asynccontextmanager
async def rabbit_tap(amqp_url: str, exchange: str, routing_key: str = "#") -> AsyncIterator[Tap]:
    """A private queue bound to `exchange`: a copy of every message routed there from now on."""
    tap = Tap()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"tap.{uuid.uuid4().hex[:8]}", exclusive=True)
        await queue.bind(exchange, routing_key)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                tap.add(decode(message.body))

        await queue.consume(on_message)
        yield tap
