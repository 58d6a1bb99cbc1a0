"""The RabbitMQ side of the system: declare topology, publish with confirms, start consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import suppress

import aio_pika
import structlog
from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed, DeliveryError

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE, Envelope, encode
from shared.errors import PublishError
from shared.handlers import Receiver
from shared.lifecycle import Lifecycle
from shared.metrics import MESSAGES_PUBLISHED
from shared.rabbit import cluster, topology
from shared.rabbit.confirm import confirmed_publish
from shared.rabbit.consumer import RabbitConsumer
from shared.retry import RetryPolicy
from shared.tracing import publishing

log = structlog.get_logger()


class QueueArgumentsDiffer(Exception):
    """A queue was declared earlier (by an older version, say) with other arguments."""


class RabbitBus(Lifecycle):
    """One robust connection; callers use logical names, the bus adds `prefix` to every one."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        prefetch: int = 50,
        confirm_timeout: float = 10.0,
        exchange_wait: float = 60.0,  # for another service to declare an exchange we bind to
    ) -> None:
        self._url = url
        self.prefix = prefix
        self._prefetch = prefetch
        self._confirm_timeout = confirm_timeout
        self._exchange_wait = exchange_wait
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None  # topology
        self._publishing: AbstractRobustChannel | None = None  # renewed after a nack
        self._consumers: list[RabbitConsumer] = []

    def name(self, logical: str) -> str:
        """The broker-side name of an exchange or queue."""
        return self.prefix + logical

    async def start(self) -> None:
        """Connect; the connection and its channels come back by themselves after an outage,
        on another node of a cluster when `url` lists several (comma-separated)."""
        self._connection = await cluster.connect_robust(self._url)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._publishing = await self._connection.channel(publisher_confirms=True)
        log.info("rabbit.connected", prefix=self.prefix)

    async def stop(self) -> None:
        """Stop every consumer gracefully, then close the connection."""
        for consumer in self._consumers:
            await consumer.stop()
        self._consumers.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._channel = self._publishing = None

    async def ping(self) -> None:
        """Ask the broker for real (readiness); raises, or waits while it is unreachable."""
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("not connected to RabbitMQ")
        # A passive declare of a built-in exchange is a round trip that cannot close the channel;
        # robust=False keeps aio-pika from answering it from its own cache.
        await self._open_channel().declare_exchange("amq.topic", passive=True, robust=False)

    async def declare_exchange(self, name: str, type: str = "topic") -> None:
        """Declare an exchange this service owns; others only bind to it (declare_queue)."""
        await self._open_channel().declare_exchange(
            self.name(name), aio_pika.ExchangeType(type), durable=True
        )

    async def declare_queue(
        self,
        queue: str,
        *,
        exchange: str,
        routing_keys: Sequence[str],
        retry: RetryPolicy,
        delivery_limit: int = topology.DELIVERY_LIMIT,
    ) -> None:
        """Work queue bound to `exchange`, one retry queue per delay, parking queue `<queue>.dlq`.

        The exchange is its owner's to declare, perhaps in another service starting now: until
        it exists, this waits (at most `exchange_wait` seconds). Consume with the same `retry`.
        """
        work = self.name(queue)
        await self._declare(topology.parking_queue(work), topology.PARKING_QUEUE_ARGUMENTS)
        tiers = {topology.ttl_ms(delay): delay for delay in retry.delays}
        for _, delay in sorted(tiers.items()):
            retrying = topology.retry_queue(work, delay)
            await self._declare(retrying, topology.retry_queue_arguments(work, delay))
        declared = await self._declare(work, topology.work_queue_arguments(work, delivery_limit))
        await self._exchange_declared(exchange)
        for key in routing_keys:
            await declared.bind(self.name(exchange), key)

    async def _declare(self, name: str, arguments: Mapping[str, object]) -> AbstractQueue:
        """Declare one durable queue; QueueArgumentsDiffer if it exists with other arguments."""
        try:
            return await self._open_channel().declare_queue(
                name, durable=True, arguments=dict(arguments)
            )
        except ChannelPreconditionFailed as exc:
            raise QueueArgumentsDiffer(
                f"queue {name} exists with other arguments than this version declares "
                f"({dict(arguments)}); RabbitMQ never changes a queue's arguments: move or "
                f"drain its messages, delete it, and start again. RabbitMQ said: {exc}"
            ) from exc

    async def _exchange_declared(self, exchange: str) -> None:
        """Return once `exchange` exists; TimeoutError if its owner has not declared it in time."""
        name = self.name(exchange)
        waiting = False
        try:
            async with asyncio.timeout(self._exchange_wait):
                while not await self._exchange_exists(name):
                    if not waiting:
                        log.info(f"waiting for exchange {name}, declared by its owner")
                        waiting = True
                    await asyncio.sleep(0.5)
        except TimeoutError as exc:
            raise TimeoutError(
                f"exchange {name!r} was not declared within {self._exchange_wait}s by its owner"
            ) from exc

    async def _exchange_exists(self, name: str) -> bool:
        assert self._connection is not None
        # A plain channel of its own: asking for a missing exchange closes the channel it was
        # asked on, and a robust channel would be reopened behind our back.
        probe = aio_pika.Channel(self._connection, publisher_confirms=False)
        try:
            async with probe:
                await probe.declare_exchange(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        return True

    async def publish(
        self,
        channel: Channel,
        envelope: Envelope,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Return once the broker confirmed the message; raise PublishError otherwise.

        The routing key is the channel's; `key` is used only when the channel names none
        (the Kafka adapter's record key has no meaning here).
        """
        if channel.broker != "rabbit":
            raise ValueError(f"not a RabbitMQ channel: {channel}")
        routing_key = channel.routing_key or key
        if routing_key is None:
            raise ValueError(f"no routing key for {channel}")
        message = aio_pika.Message(
            body=encode(envelope),
            headers=dict(headers or {}),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.id,
            correlation_id=envelope.correlationid,
            type=envelope.type,
            timestamp=envelope.time,
            app_id=envelope.source,
        )
        used = self._publishing
        if used is None:
            raise RuntimeError("RabbitBus.start() was not called")
        with publishing("rabbitmq", channel.name, envelope.id, envelope.type, headers or {}):
            try:
                await confirmed_publish(
                    used, self.name(channel.name), message, routing_key,
                    confirm_timeout=self._confirm_timeout,
                )  # fmt: skip
            except PublishError as exc:
                if isinstance(exc.__cause__, DeliveryError):
                    await self._renew_publishing(used)
                raise
        MESSAGES_PUBLISHED.labels("rabbit", channel.name).inc()
        log.debug(
            "rabbit.published",
            exchange=channel.name,
            routing_key=routing_key,
            message_id=envelope.id,
            correlation_id=envelope.correlationid,
        )

    async def consume(
        self, queue: str, receiver: Receiver, *, retry: RetryPolicy
    ) -> RabbitConsumer:
        """Start handling `queue` on its own channel, with the `retry` it was declared with."""
        if self._connection is None:
            raise RuntimeError("RabbitBus.start() was not called")
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._prefetch)
        consumer = RabbitConsumer(
            self._connection,
            channel,
            queue,
            self.name(queue),
            receiver,
            retry,
            self._confirm_timeout,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def _renew_publishing(self, refused: AbstractRobustChannel) -> None:
        """Publish on a new channel from now on, after `refused` was nacked.

        A nack is the broker's "not taken": the outbox tries the row again. But after a quorum
        queue's leader moved to another node, the channel that published to it can go on
        refusing every message (seen with RabbitMQ 3.10 and `x-overflow: reject-publish`) while
        a new channel publishes at once; so the next try gets a channel with no such state.
        """
        if self._connection is None or self._publishing is not refused:
            return  # stopped, or another publish renewed it already
        self._publishing = await self._connection.channel(publisher_confirms=True)
        log.warning("rabbit.publishing_channel_renewed", prefix=self.prefix)
        with suppress(Exception):  # it is being dropped; how it closes changes nothing
            await refused.close()

    def _open_channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("RabbitBus.start() was not called")
        return self._channel
