"""Consumers watched for life and progress: readiness names a dead or stalled one, and a
supervisor restarts a dead one.

A consumer can stop working without anyone noticing: its task ends, its channel is closed, or
a Kafka member keeps its partitions after a broker restart and fetches nothing more
(aio-libs/aiokafka#1154). Readiness asks each consumer whether it lives and whether messages
wait for it while it finishes none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from shared.lifecycle import Lifecycle
from shared.metrics import CONSUMER_READY, CONSUMER_RESTARTS

log = structlog.get_logger(__name__)


class ConsumerDead(Exception):
    """The consumer takes no messages at all: its task ended, or its channel is closed."""


class ConsumerWaiting(Exception):
    """Its broker is away; its client reconnects and brings it back by itself, so it is not
    restarted, only reported."""


class ConsumerStalled(Exception):
    """Messages wait for the consumer, and it has finished none of them for too long."""


@dataclass
class Progress:
    """When a consumer last finished a message, and since when readiness has seen some waiting."""

    finished: float = field(default_factory=time.monotonic)
    waiting_since: float | None = None

    def advance(self) -> None:
        """A message is done with: acknowledged or committed, sent to retry, or parked."""
        self.finished = time.monotonic()

    def stalled_for(self, waiting: int, now: float) -> float:
        """Seconds messages have waited with none finished; 0 while nothing waits.

        The clock starts no earlier than the first check that saw messages waiting: a consumer
        idle for an hour is not stalled the moment a message arrives.
        """
        if waiting <= 0:
            self.waiting_since = None
            return 0.0
        if self.waiting_since is None:
            self.waiting_since = now
        return max(0.0, now - max(self.finished, self.waiting_since))


class Watched(Protocol):
    """What the RabbitMQ and Kafka consumers both answer."""

    broker: str  # "rabbit" or "kafka", as in the metrics' labels
    progress: Progress

    @property
    def label(self) -> str:
        """The logical queue or consumer group."""
        ...

    def death(self) -> str | None:
        """Why it takes no messages and needs a restart, or None while it does (or while it
        waits for its broker to come back, which `waiting` then raises)."""
        ...

    async def waiting(self) -> int:
        """Messages it has still to finish: held, or still on the broker."""
        ...

    async def restart(self) -> None:
        """Consume again; returns once it does."""
        ...


def check_name(consumer: Watched) -> str:
    """The consumer's key among the /readyz checks."""
    return f"consumer:{consumer.broker}:{consumer.label}"


async def check(consumer: Watched, stall_after: float, now: float) -> None:
    """Return if the consumer works; raise ConsumerDead or ConsumerStalled saying why not."""
    ready = CONSUMER_READY.labels(consumer.broker, consumer.label)
    why = consumer.death()
    if why is not None:
        ready.set(0)
        raise ConsumerDead(why)
    try:
        waiting = await consumer.waiting()
    except Exception:
        ready.set(0)  # it cannot tell what waits for it: its broker is away, or did not answer
        raise
    stalled = consumer.progress.stalled_for(waiting, now)
    ready.set(stalled < stall_after)
    if stalled >= stall_after:
        raise ConsumerStalled(f"{waiting} messages waiting, none finished for {stalled:.0f}s")


class Supervisor(Lifecycle):
    """Restarts the consumers that died, as a process supervisor restarts a process.

    A dead consumer holds its Kafka partitions, or its prefetched RabbitMQ messages, away from
    the healthy ones until it is restarted or the whole service is.
    """

    def __init__(
        self, consumers: Sequence[Watched], *, every: float = 1.0, restart_within: float = 60.0
    ) -> None:
        self._consumers = consumers  # the runtime's list: consumers started later are watched
        self._every, self._restart_within = every, restart_within
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="consumer-supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            for consumer in list(self._consumers):
                why = consumer.death()
                if why is not None:
                    await self._restart(consumer, why)

    async def _restart(self, consumer: Watched, why: str) -> None:
        name = check_name(consumer)
        log.warning("consumer.restarting", consumer=name, reason=why)
        try:
            async with asyncio.timeout(self._restart_within):
                await consumer.restart()
        except Exception as exc:  # tried again on the next round
            log.warning("consumer.restart_failed", consumer=name, error=repr(exc))
            return
        CONSUMER_RESTARTS.labels(consumer.broker, consumer.label).inc()
        log.info("consumer.restarted", consumer=name)
