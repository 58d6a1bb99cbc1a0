"""A consumer of one work queue: ack after the handler, retry transient failures, park the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog
from aio_pika import DeliveryMode, Message
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from shared import failure_headers as fh
from shared.envelope import Envelope, decode
from shared.errors import DependencyUnavailable, PermanentError, PublishError
from shared.handlers import Receiver
from shared.metrics import (
    HANDLER_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    MESSAGES_RETRIED,
)
from shared.rabbit import topology
from shared.rabbit.confirm import confirmed_publish
from shared.rabbit.depth import queue_depth
from shared.retry import RetryPolicy
from shared.supervision import ConsumerWaiting, Progress
from shared.tracing import consuming

log = structlog.get_logger()
# How long a restart waits for the robust connection to bring a closed channel back itself.
RESTORE_WAIT = 5.0


@dataclass(frozen=True)
class Delivery:
    """What the transport knows about the message a handler is processing."""

    queue: str  # logical name, without the prefix
    routing_key: str
    headers: Mapping[str, Any]
    attempt: int  # 1 on first delivery, +1 after each delayed retry
    redelivered: bool  # set by the broker when an earlier delivery was never acked


_current: ContextVar[Delivery] = ContextVar("rabbit_delivery")


def current_delivery() -> Delivery:
    """The delivery being handled; only valid inside a handler."""
    return _current.get()


class RabbitConsumer:
    """Started by RabbitBus.consume; `stop()` lets in-flight handlers finish and ack first."""

    broker = "rabbit"

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        queue: str,
        prefixed: str,
        receiver: Receiver,
        retry: RetryPolicy,
        confirm_timeout: float,
    ) -> None:
        self.queue = queue
        self._prefixed = prefixed
        self._connection, self._channel = connection, channel
        self._receiver = receiver
        self._retry = retry
        self._confirm_timeout = confirm_timeout
        self._amqp_queue: AbstractRobustQueue | None = None
        self._tag: str | None = None
        self._stopping = False
        self.draining = False  # cancelled at the broker, waiting for handlers (health, tests)
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.progress = Progress()  # for readiness (shared.supervision)

    async def start(self) -> None:
        # Passive: only RabbitBus.declare_queue creates topology, with its arguments.
        self._amqp_queue = await self._channel.declare_queue(self._prefixed, passive=True)
        self._tag = await self._amqp_queue.consume(self._on_message)
        log.info("rabbit.consuming", queue=self._prefixed)

    @property
    def label(self) -> str:
        """The logical queue."""
        return self.queue

    def death(self) -> str | None:
        """Why this consumer takes no messages and needs a restart, or None while it does, is
        stopping, or waits for the broker."""
        if self._stopping or not self._channel.is_closed or self._broker_away():
            return None
        return "its channel is closed"

    def _broker_away(self) -> bool:
        """The connection is down: it reconnects and restores this channel and its consumer by
        itself, and a reopen of ours meanwhile would race that restore."""
        return not self._connection.connected.is_set()

    async def waiting(self) -> int:
        """Messages ready in the queue, plus those this consumer holds unfinished."""
        if self._broker_away():
            raise ConsumerWaiting("its connection is down; it consumes again once RabbitMQ is back")
        if self._channel.is_closed:
            raise ConnectionError("its channel is closed")
        depth = await queue_depth(self._connection, self._prefixed)
        if depth is None:
            raise LookupError(f"queue {self._prefixed} is not declared")
        return depth.ready + self._busy

    async def restart(self) -> None:
        """Consume again on this channel.

        After an outage the robust connection brings the channel and its consumer back; a
        channel closed for good (by a client, or a restore that failed) is reopened here.
        """
        if self._channel.is_closed:
            with suppress(TimeoutError):
                async with asyncio.timeout(RESTORE_WAIT):
                    await self._channel.ready()
        if self._channel.is_closed:
            if self._broker_away():  # gone again while we waited: the connection restores it
                raise ConsumerWaiting("its connection is down")
            await self._channel.reopen()  # restores the qos and the queue's consumer too
        underlay = await self._channel.get_underlay_channel()
        if self._amqp_queue is None or self._tag not in underlay.consumers:
            await self.start()

    async def stop(self, grace: float = 30.0) -> None:
        """Take no more messages, wait for the handlers running now, then close the channel."""
        if self._stopping:
            return
        self._stopping = True
        if self._amqp_queue is not None and self._tag is not None and not self._channel.is_closed:
            try:
                await self._amqp_queue.cancel(self._tag)
            except (AMQPError, ChannelInvalidStateError, ConnectionError):
                log.warning("rabbit.cancel_failed", queue=self._prefixed, exc_info=True)
        self.draining = True
        log.info("rabbit.draining", queue=self._prefixed, in_flight=self._busy)
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            # Closing cancels the stragglers; their messages were never acked, so they come back.
            log.warning("rabbit.stop_timeout", queue=self._prefixed, in_flight=self._busy)
        await self._channel.close()
        self.draining = False
        log.info("rabbit.stopped", queue=self._prefixed)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            # Prefetched but not started: left unacked, the broker hands it on when we close.
            return
        self._busy += 1
        self._idle.clear()
        try:
            await self._process(message)
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        attempt = _attempts_so_far(headers) + 1
        try:
            envelope = decode(message.body)
        except PermanentError as exc:
            await self._park(message, exc, attempt)
            return
        delivery = Delivery(
            queue=self.queue,
            routing_key=str(headers.get(fh.ORIGINAL_ROUTING_KEY, message.routing_key or "")),
            headers=headers,
            attempt=attempt,
            redelivered=bool(message.redelivered),
        )
        token = _current.set(delivery)
        try:
            with structlog.contextvars.bound_contextvars(
                correlation_id=envelope.correlationid,
                message_id=envelope.id,
                message_type=envelope.type,
                queue=self.queue,
                attempt=attempt,
            ):
                await self._settle(message, envelope, attempt)
        finally:
            _current.reset(token)

    async def _settle(
        self, message: AbstractIncomingMessage, envelope: Envelope, attempt: int
    ) -> None:
        try:
            with (
                HANDLER_SECONDS.labels("rabbit", self.queue).time(),
                consuming(
                    "rabbitmq",
                    self.queue,
                    envelope.id,
                    envelope.type,
                    message.headers or {},
                    **{"switchyard.attempt": attempt},
                ),
            ):
                await self._receiver(envelope)
        except PermanentError as exc:
            await self._park(message, exc, attempt)
        except DependencyUnavailable as exc:
            # Not the message's fault: back after the first delay, its attempts untouched.
            await self._schedule_retry(
                message, exc, attempt - 1, self._retry.delays[0], counted=False
            )
        except Exception as exc:
            delay = self._retry.delay_after(attempt)
            if delay is None:
                await self._park(message, exc, attempt)
            else:
                await self._schedule_retry(message, exc, attempt, delay)
        else:
            if await self._finish(message):
                MESSAGES_CONSUMED.labels("rabbit", self.queue).inc()
                log.debug("rabbit.handled")

    async def _schedule_retry(
        self,
        message: AbstractIncomingMessage,
        exc: Exception,
        attempt: int,
        delay: float,
        *,
        counted: bool = True,  # False while a dependency is down: not the message's failure
    ) -> None:
        target = topology.retry_queue(self._prefixed, delay)
        if await self._forward(message, target, {fh.ATTEMPTS: attempt}):
            if counted:
                MESSAGES_RETRIED.labels("rabbit", self.queue).inc()
            log.warning("rabbit.retry_scheduled", delay=delay, error=repr(exc))

    async def _park(self, message: AbstractIncomingMessage, exc: Exception, attempt: int) -> None:
        extra = {fh.ATTEMPTS: attempt, **fh.error_headers(exc), fh.ORIGINAL_QUEUE: self.queue}
        if await self._forward(message, topology.parking_queue(self._prefixed), extra):
            MESSAGES_DEAD_LETTERED.labels("rabbit", self.queue).inc()
            log.error("rabbit.parked", queue=self.queue, attempt=attempt, error=repr(exc))

    async def _forward(
        self, message: AbstractIncomingMessage, target: str, extra: dict[str, Any]
    ) -> bool:
        """Copy to `target` with confirms, then ack the original, so the message is never lost.

        If the copy fails, the original is requeued and tried again.
        """
        headers = {
            k: v
            for k, v in (message.headers or {}).items()
            if k not in topology.BROKER_DEATH_HEADERS
        }
        # Retried messages come back via the default exchange: remember where they first arrived.
        headers.setdefault(fh.ORIGINAL_EXCHANGE, message.exchange or "")
        headers.setdefault(fh.ORIGINAL_ROUTING_KEY, message.routing_key or "")
        headers.update(extra)
        copy = Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
            app_id=message.app_id,
        )
        try:
            await confirmed_publish(
                self._channel, "", copy, target, confirm_timeout=self._confirm_timeout
            )
        except PublishError:
            log.exception("rabbit.forward_failed", target=target)
            await _nack(message)
            return False
        return await self._finish(message)

    async def _finish(self, message: AbstractIncomingMessage) -> bool:
        """Ack a message done with (handled, sent to retry, or parked): that is progress."""
        acked = await _ack(message)
        if acked:
            self.progress.advance()
        return acked


def _attempts_so_far(headers: Mapping[str, Any]) -> int:
    # Only this adapter should set it; a stray value from a publisher must not crash the consumer.
    try:
        return max(0, int(headers.get(fh.ATTEMPTS, 0)))
    except (TypeError, ValueError):
        return 0


async def _ack(message: AbstractIncomingMessage) -> bool:
    try:
        await message.ack()
    except (AMQPError, ChannelInvalidStateError, ConnectionError):
        # The channel is gone, so the broker redelivers: at least once, and the inbox dedups.
        log.warning("rabbit.ack_failed", exc_info=True)
        return False
    return True


async def _nack(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except (AMQPError, ChannelInvalidStateError, ConnectionError):
        log.warning("rabbit.nack_failed", exc_info=True)
