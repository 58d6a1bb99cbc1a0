"""Everything a service runs besides HTTP: database, brokers, outbox relay and consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import make_engine, make_sessions
from shared.dispatch import Dispatcher, Handler
from shared.kafka import GroupTimings, KafkaBus, KafkaConsumer, KafkaRetry
from shared.outbox_relay import OutboxRelay
from shared.rabbit import RabbitBus, RabbitConsumer, RetryPolicy
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RabbitSubscription:
    """A work queue bound to an exchange, and what to do with each message type on it."""

    queue: str
    exchange: str
    handlers: Mapping[str, Handler]
    exchange_type: str = "topic"

    @property
    def routing_keys(self) -> Sequence[str]:
        return tuple(self.handlers)


@dataclass(frozen=True)
class KafkaSubscription:
    """A consumer group on a topic, and what to do with the event types it reads."""

    topic: str
    group: str
    handlers: Mapping[str, Handler]


@dataclass(frozen=True)
class Wiring:
    """One service's message flow on one screen: what it declares, publishes and consumes."""

    service: str
    outbox: sa.Table
    inbox: sa.Table
    exchanges: Mapping[str, str] = field(default_factory=dict)  # name -> type
    topics: Mapping[str, int] = field(default_factory=dict)  # name -> partitions
    rabbit: Sequence[RabbitSubscription] = ()
    kafka: Sequence[KafkaSubscription] = ()


class Runtime:
    """Starts the pieces in dependency order and stops them in reverse, finishing work in flight."""

    def __init__(self, settings: ServiceSettings, wiring: Wiring, *, consume: bool = True) -> None:
        self.settings, self.wiring, self.consume = settings, wiring, consume
        self.engine: AsyncEngine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        self.sessions: async_sessionmaker[AsyncSession] = make_sessions(self.engine)
        prefix = settings.broker_prefix
        self.rabbit = RabbitBus(settings.amqp_url, prefix=prefix)
        self.kafka = KafkaBus(
            settings.kafka_bootstrap_servers,
            prefix=prefix,
            client_id=wiring.service,
            group_timings=GroupTimings(
                settings.kafka_session_timeout_ms, settings.kafka_heartbeat_interval_ms
            ),
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        self.relay = OutboxRelay(
            self.engine,
            wiring.outbox,
            {"rabbit": self.rabbit, "kafka": self.kafka},
            poll_interval=settings.outbox_poll_interval,
        )
        self.consumers: list[RabbitConsumer | KafkaConsumer] = []

    async def start(self) -> None:
        await asyncio.gather(self.rabbit.connect(), self.kafka.start())
        await self._declare()
        await self.relay.start()
        if self.consume:
            await self._start_consumers()
        log.info("service started", service=self.wiring.service)

    async def _declare(self) -> None:
        w = self.wiring
        for name, kind in w.exchanges.items():
            await self.rabbit.declare_exchange(name, kind)
        retry = RetryPolicy(tuple(self.settings.rabbit_retry_delays_ms))
        for sub in w.rabbit:
            await self.rabbit.declare_exchange(sub.exchange, sub.exchange_type)
            await self.rabbit.declare_queue(
                sub.queue, exchange=sub.exchange, routing_keys=sub.routing_keys, retry=retry
            )
        topics = dict(w.topics) | {sub.topic: w.topics.get(sub.topic, 3) for sub in w.kafka}
        if topics:
            await self.kafka.ensure_topics(topics)

    async def _start_consumers(self) -> None:
        w = self.wiring
        for sub in w.rabbit:
            dispatcher = Dispatcher(sub.queue, sub.handlers, self.sessions, w.inbox)
            self.consumers.append(await self.rabbit.consume(sub.queue, dispatcher))
        retry = KafkaRetry(
            attempts=self.settings.kafka_retry_attempts,
            backoff=tuple(self.settings.kafka_retry_backoff),
        )
        for sub in w.kafka:
            dispatcher = Dispatcher(sub.group, sub.handlers, self.sessions, w.inbox)
            consumer = self.kafka.consumer([sub.topic], sub.group, dispatcher, retry=retry)
            await consumer.start()
            self.consumers.append(consumer)

    async def wait_assigned(self, timeout: float = 15.0) -> None:
        """Until every Kafka consumer owns partitions (tests publish only after this)."""
        kafka = [c for c in self.consumers if isinstance(c, KafkaConsumer)]
        await asyncio.gather(*(c.wait_assigned(timeout) for c in kafka))

    async def stop(self) -> None:
        """Stop taking messages, finish in-flight handlers, ack or commit, then close."""
        for consumer in reversed(self.consumers):
            await consumer.stop()
        self.consumers.clear()
        await self.relay.stop()
        await asyncio.gather(self.rabbit.close(), self.kafka.stop(), return_exceptions=True)
        await self.engine.dispose()
        log.info("service stopped", service=self.wiring.service)

    async def readiness(self) -> dict[str, str]:
        """'ok' or the error for the database and each broker, each asked for real."""

        async def database() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        checks = {
            "database": database(),
            "rabbitmq": self.rabbit.ping(),
            "kafka": self.kafka.ping(),
        }
        results = await asyncio.gather(
            *(asyncio.wait_for(c, timeout=3) for c in checks.values()), return_exceptions=True
        )
        return {
            name: "ok" if not isinstance(r, BaseException) else f"{type(r).__name__}: {r}"
            for name, r in zip(checks, results, strict=True)
        }
