"""The dead-letter age gauge: how long the oldest message this service parked has waited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TypeVar

import structlog

from shared.dead_letters.kafka import KafkaDeadLetters
from shared.dead_letters.rabbit import RabbitDeadLetters
from shared.kafka.config import DEAD_LETTER_SUFFIX
from shared.lifecycle import Lifecycle
from shared.metrics import DEAD_LETTER_OLDEST_AGE
from shared.rabbit.topology import parking_queue

log = structlog.get_logger(__name__)


class DeadLetterWatch(Lifecycle):
    """Every `interval` seconds, reads the head of each `.dlq` and `.dlt` the service parks into.

    Only the first message per queue or partition is read: it is the oldest one. The clients are
    made by the first round and kept: a connection, an admin client and a reader each round, in
    every service, would cost the brokers more than the reading. After a failure, the next round
    makes them anew.
    """

    def __init__(
        self,
        amqp_url: str,
        kafka_bootstrap: str,
        *,
        prefix: str,
        queues: Sequence[str],
        topics: Sequence[str],
        interval: float,
    ) -> None:
        self._amqp_url, self._bootstrap, self._prefix = amqp_url, kafka_bootstrap, prefix
        self._queues, self._topics, self._interval = list(queues), list(topics), interval
        self._rabbit: RabbitDeadLetters | None = None
        self._kafka: KafkaDeadLetters | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._queues or self._topics:
            self._task = asyncio.create_task(self._run(), name="dead-letter-watch")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self._close()

    async def measure(self) -> None:
        """Set the gauge of every dead-letter queue and topic once."""
        try:
            if self._queues:
                if self._rabbit is None:
                    self._rabbit = await _started(
                        RabbitDeadLetters(self._amqp_url, prefix=self._prefix)
                    )
                for queue in self._queues:
                    oldest = await self._rabbit.oldest(queue)
                    _set("rabbit", parking_queue(queue), [oldest.age() if oldest else None])
            if self._topics:
                if self._kafka is None:
                    self._kafka = await _started(
                        KafkaDeadLetters(self._bootstrap, prefix=self._prefix)
                    )
                for topic in self._topics:
                    letters = await self._kafka.browse([topic], limit=1)
                    _set("kafka", topic + DEAD_LETTER_SUFFIX, [d.age() for d in letters])
        except Exception:
            # A client that failed may stay broken (a closed AMQP connection): reconnect next round.
            await self._close()
            raise

    async def _close(self) -> None:
        clients, self._rabbit, self._kafka = (self._rabbit, self._kafka), None, None
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):  # closing what already failed may fail too
                    await client.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.measure()
            except Exception as exc:  # a broker away now is the readiness check's news
                log.warning("dead_letters.watch_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)


Client = TypeVar("Client", bound=Lifecycle)


async def _started(client: Client) -> Client:
    await client.start()
    return client


def _set(broker: str, channel: str, ages: list[float | None]) -> None:
    known = [age for age in ages if age is not None]
    DEAD_LETTER_OLDEST_AGE.labels(broker, channel).set(max(known, default=0.0))
