"""Everything a service runs besides HTTP: database, brokers, outbox relay and consumers."""

from __future__ import annotations

import asyncio
import time

import structlog

from shared.db import Database
from shared.dead_letters.watch import DeadLetterWatch
from shared.dispatch import Dispatcher
from shared.kafka import GroupTimings, KafkaBus, KafkaConsumer
from shared.outbox_relay import OutboxRelay
from shared.rabbit import RabbitBus, RabbitConsumer
from shared.settings import ServiceSettings
from shared.supervision import Supervisor, check, check_name
from shared.wiring import Wiring

log = structlog.get_logger(__name__)


class Runtime:
    """Starts the pieces in dependency order and stops them in reverse, finishing work in flight."""

    def __init__(self, settings: ServiceSettings, wiring: Wiring, *, consume: bool = True) -> None:
        self.settings, self.wiring, self.consume = settings, wiring, consume
        self.database = Database(
            settings.database_url,
            size=settings.db_pool_size,
            acquire_timeout=settings.db_pool_timeout,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
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
            self.database,
            wiring.outbox,
            {"rabbit": self.rabbit, "kafka": self.kafka},
            poll_interval=settings.outbox_poll_interval,
        )
        # One policy per broker, the same object for declaring a queue and consuming it.
        self.rabbit_retry, self.kafka_retry = settings.rabbit_retry, settings.kafka_retry
        self.consumers: list[RabbitConsumer | KafkaConsumer] = []
        self.supervisor = Supervisor(self.consumers)  # restarts a consumer that died
        self.dead_letters = DeadLetterWatch(
            settings.amqp_url,
            settings.kafka_bootstrap_servers,
            prefix=prefix,
            queues=[sub.queue for sub in wiring.rabbit],
            topics=[sub.topic for sub in wiring.kafka],
            interval=settings.dead_letter_watch_interval,
        )

    async def start(self) -> None:
        await self.database.open()
        await asyncio.gather(self.rabbit.start(), self.kafka.start())
        await self._declare()
        await self.relay.start()
        if self.consume:
            await self._start_consumers()
            await self.supervisor.start()
            await self.dead_letters.start()
        log.info("service started", service=self.wiring.service)

    async def _declare(self) -> None:
        w = self.wiring
        for name, kind in w.exchanges.items():
            await self.rabbit.declare_exchange(name, kind)
        for sub in w.rabbit:
            await self.rabbit.declare_queue(
                sub.queue,
                exchange=sub.exchange,
                routing_keys=sub.routing_keys,
                retry=self.rabbit_retry,
            )
        if w.topics:
            await self.kafka.ensure_topics(dict.fromkeys(w.topics, w.partitions))

    async def _start_consumers(self) -> None:
        w = self.wiring
        if w.kafka:
            await self.kafka.until_coordinated([sub.group for sub in w.kafka])
        for sub in w.rabbit:
            dispatcher = Dispatcher(sub.queue, sub.handlers, self.database, w.inbox)
            consumer = await self.rabbit.consume(sub.queue, dispatcher, retry=self.rabbit_retry)
            self.consumers.append(consumer)
        for sub in w.kafka:
            dispatcher = Dispatcher(sub.group, sub.handlers, self.database, w.inbox)
            reads = sub.handlers.keys()  # records of other types are committed unread
            consumer = await self.kafka.consume(
                [sub.topic], sub.group, dispatcher, retry=self.kafka_retry, types=reads
            )
            self.consumers.append(consumer)

    async def wait_assigned(self, timeout: float = 15.0) -> None:
        """Until every Kafka consumer owns partitions (tests publish only after this)."""
        kafka = [c for c in self.consumers if isinstance(c, KafkaConsumer)]
        await asyncio.gather(*(c.wait_assigned(timeout) for c in kafka))

    async def stop(self) -> None:
        """Stop taking messages, finish in-flight handlers, ack or commit, then close."""
        await self.supervisor.stop()
        await self.dead_letters.stop()
        for consumer in reversed(self.consumers):
            await consumer.stop()
        self.consumers.clear()
        await self.relay.stop()
        await asyncio.gather(self.rabbit.stop(), self.kafka.stop(), return_exceptions=True)
        await self.database.close()
        log.info("service stopped", service=self.wiring.service)

    async def readiness(self) -> dict[str, str]:
        """'ok' or the error for the database, each broker and each consumer, asked for real.

        A consumer is not ok when it died (the supervisor is restarting it) or when messages
        have waited `consumer_stall_seconds` for it while it finished none.
        """

        async def database() -> None:
            async with self.database.autocommit() as conn:
                await conn.execute("SELECT 1")

        checks = {
            "database": database(),
            "rabbitmq": self.rabbit.ping(),
            "kafka": self.kafka.ping(),
        }
        now, stall_after = time.monotonic(), self.settings.consumer_stall_seconds
        for consumer in self.consumers:
            checks[check_name(consumer)] = check(consumer, stall_after, now)
        results = await asyncio.gather(
            *(asyncio.wait_for(c, timeout=3) for c in checks.values()), return_exceptions=True
        )
        return {
            name: "ok" if not isinstance(r, BaseException) else f"{type(r).__name__}: {r}"
            for name, r in zip(checks, results, strict=True)
        }
