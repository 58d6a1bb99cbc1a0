"""RabbitMQ's dead letters: browse each `<queue>.dlq`, replay a message to its queue, remove it.

Browsing takes the messages without acking them; whatever is neither replayed nor purged goes
back to its `.dlq` when the connection closes, so a browse that dies halfway loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from shared import failure_headers as fh
from shared.dead_letters import letter
from shared.dead_letters.letter import DeadLetter
from shared.lifecycle import Lifecycle
from shared.rabbit import cluster
from shared.rabbit.confirm import confirmed_publish
from shared.rabbit.depth import queue_depth
from shared.rabbit.topology import BROKER_DEATH_HEADERS, parking_queue

# Counted by the broker on each redelivery; the replayed message starts again from none.
DELIVERY_COUNT = "x-delivery-count"
# How long a browse waits for parked messages another reader took after it counted them, and
# how often it asks again: a service's age watch gives its one back within a round trip.
HELD_WAIT, HELD_POLL = 1.0, 0.05


class RabbitDeadLetters(Lifecycle):
    """One plain connection: robust channels would redeliver behind our back after an outage."""

    def __init__(self, url: str, *, prefix: str = "", confirm_timeout: float = 10.0) -> None:
        self._url, self._prefix, self._confirm_timeout = url, prefix, confirm_timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self.held: dict[str, int] = {}  # work queue -> parked messages the last browse missed

    async def start(self) -> None:
        """Connect to the first node that answers (AMQP_URL may list a cluster's nodes)."""
        self._connection = await cluster.connect(self._url, timeout=10)
        self._channel = await self._connection.channel(publisher_confirms=True)

    async def stop(self) -> None:
        """Close: every message browsed and not yet removed goes back to its `.dlq`."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._channel = None

    async def browse(self, queues: Sequence[str], *, limit: int | None = None) -> list[DeadLetter]:
        """The messages parked for each work queue, oldest first (at most `limit` per queue).

        Afterwards `held` counts, per work queue, the parked messages another reader held.
        """
        found: list[DeadLetter] = []
        self.held = {}
        for queue in queues:
            dlq = parking_queue(queue)
            depth = await queue_depth(self._open_connection(), self._prefix + dlq)
            if depth is None:
                continue
            amqp_queue = await self._open().get_queue(self._prefix + dlq, ensure=False)
            letters = await self._take(amqp_queue, dlq, queue, limit)
            if limit is None:
                # The count is of messages ready; one another reader took since (another `dlq`
                # or `make status`, a service's age watch) cannot be taken until it gives it
                # back. The watch does at once: wait a moment before calling it held.
                clock = asyncio.get_running_loop().time
                deadline = clock() + HELD_WAIT
                while len(letters) < depth.ready and clock() < deadline:
                    await asyncio.sleep(HELD_POLL)
                    letters += await self._take(amqp_queue, dlq, queue, None)
                if len(letters) < depth.ready:
                    self.held[queue] = depth.ready - len(letters)
            found += letters
        return found

    async def oldest(self, queue: str) -> DeadLetter | None:
        """The message at the head of the queue's `.dlq` (the oldest one), given back at once.

        AMQP reads a message only by taking it, and its age is in the message (`x-parked-at`):
        other readers miss it for the one round trip between this get and its nack.
        """
        name = self._prefix + parking_queue(queue)
        depth = await queue_depth(self._open_connection(), name)
        if depth is None or not depth.ready:
            return None  # a get on a missing queue would close the channel
        amqp_queue = await self._open().get_queue(name, ensure=False)
        message = await amqp_queue.get(no_ack=False, fail=False)
        if message is None:
            return None
        # nack, not reject: from RabbitMQ 4.3 a reject counts towards a quorum queue's delivery
        # limit, and this message is given back every watch round.
        await message.nack(requeue=True)
        return self._letter(message, parking_queue(queue), queue)

    async def replay(self, dead: DeadLetter) -> None:
        """Publish it to its work queue as it was; remove it once the broker confirmed."""
        message: AbstractIncomingMessage = dead.handle
        copy = aio_pika.Message(
            body=message.body,
            headers=replay_headers(message.headers or {}),
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
            app_id=message.app_id,
        )
        # Straight to the queue that failed it, not through the exchange: other queues bound
        # to the same routing key handled it already.
        await confirmed_publish(
            self._open(),
            "",
            copy,
            self._prefix + dead.origin,
            confirm_timeout=self._confirm_timeout,
        )
        await message.ack()

    async def purge(self, dead: DeadLetter) -> None:
        """Remove it for good."""
        await dead.handle.ack()

    async def _take(
        self, amqp_queue: AbstractQueue, dlq: str, queue: str, limit: int | None
    ) -> list[DeadLetter]:
        """Take messages unacked until the queue has no more ready, or `limit` were taken."""
        letters: list[DeadLetter] = []
        while limit is None or len(letters) < limit:
            message = await amqp_queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(self._letter(message, dlq, queue))
        return letters

    def _letter(self, message: AbstractIncomingMessage, dlq: str, queue: str) -> DeadLetter:
        headers = dict(message.headers or {})
        origin = headers.get(fh.ORIGINAL_QUEUE)
        return DeadLetter(
            id=letter.message_id(message.message_id, message.body),
            broker="rabbit",
            parked_in=dlq,
            origin=str(origin) if origin else queue,
            reason=letter.reason(headers),
            attempts=letter.attempts(headers),
            parked_at=letter.parked_at(headers, message.timestamp),
            headers=headers,
            body=message.body,
            handle=message,
        )

    def _open(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("RabbitDeadLetters.start() was not called")
        return self._channel

    def _open_connection(self) -> AbstractConnection:
        if self._connection is None:
            raise RuntimeError("RabbitDeadLetters.start() was not called")
        return self._connection


def replay_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers it was published with, and where it first arrived (the consumer reads that).

    A message the broker itself parked (delivery limit) says where it was in `x-death`.
    """
    kept = dict(headers)
    deaths = kept.get("x-death") or []
    if deaths:
        kept.setdefault(fh.ORIGINAL_EXCHANGE, deaths[-1].get("exchange", ""))
        keys = deaths[-1].get("routing-keys") or [""]
        kept.setdefault(fh.ORIGINAL_ROUTING_KEY, keys[0])
    dropped = letter.FAILURE_HEADERS | set(BROKER_DEATH_HEADERS) | {DELIVERY_COUNT}
    return {name: value for name, value in kept.items() if name not in dropped}
