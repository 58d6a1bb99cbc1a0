"""Readiness notices a consumer that died or stalled; the supervisor brings a dead one back.

A probe service is built like the real ones (create_service_app on the users database role),
with one RabbitMQ queue and one Kafka group whose handler waits at a gate the test opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.app import create_service_app
from shared.channels import Channel
from shared.envelope import Envelope, new_envelope
from shared.kafka import KafkaBus, KafkaConsumer
from shared.rabbit import RabbitBus, RabbitConsumer
from shared.supervision import check_name
from shared.wiring import KafkaSubscription, RabbitSubscription, Wiring
from tests.support.eventually import eventually
from tests.support.servers import serving
from tests.support.services import delete_work_queues, settings_for
from users import db
from users.settings import UsersSettings

pytestmark = pytest.mark.integration

EXCHANGE, QUEUE = "probe.events", "probe.work"
TOPIC, GROUP = "probe.records", "probe"
TYPE = "probe.happened"
STALL_SECONDS = 1.0


@dataclass
class Handler:
    """The probe's one handler: it waits while the gate is closed, and notes what it saw."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: list[str] = field(default_factory=list)  # envelope ids it began
    handled: list[str] = field(default_factory=list)  # envelope ids it finished

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        self.started.append(envelope.id)
        await self.gate.wait()
        self.handled.append(envelope.id)

    def wiring(self) -> Wiring:
        return Wiring(
            service="users",
            outbox=db.outbox,
            inbox=db.inbox,
            exchanges={EXCHANGE: "topic"},
            rabbit=[RabbitSubscription(QUEUE, EXCHANGE, {TYPE: self})],
            kafka=[KafkaSubscription(TOPIC, GROUP, {TYPE: self})],
        )


@dataclass
class Probe:
    """The probe service: its app, an HTTP client, publishers, and its handler."""

    app: FastAPI
    http: httpx.AsyncClient
    rabbit: RabbitBus
    kafka: KafkaBus
    handler: Handler

    def consumer(self, broker: str) -> RabbitConsumer | KafkaConsumer:
        kind = RabbitConsumer if broker == "rabbit" else KafkaConsumer
        (found,) = (c for c in self.app.state.runtime.consumers if isinstance(c, kind))
        return found

    async def publish(self, broker: str, *envelopes: Envelope) -> None:
        for envelope in envelopes:
            if broker == "rabbit":
                await self.rabbit.publish(Channel.rabbit(EXCHANGE, TYPE), envelope)
            else:
                await self.kafka.publish(Channel.kafka(TOPIC), envelope)

    async def readiness(self) -> tuple[int, dict[str, str]]:
        response = await self.http.get("/readyz")
        return response.status_code, response.json()["checks"]

    async def ready(self) -> bool:
        return (await self.readiness())[0] == 200

    async def reported_dead(self, name: str) -> str:
        """The check `name` once readiness reports it dead (the first 503s may name only the
        dead connection)."""

        async def dead() -> str | None:
            _status, checks = await self.readiness()
            return checks[name] if checks[name].startswith("ConsumerDead") else None

        return await eventually(dead, timeout=10, message=f"{name} reported dead")

    async def handles_again(self, broker: str, name: str) -> None:
        """Ready again, and a message published now is handled: the consumer was restarted."""
        await eventually(self.ready, timeout=30, message=f"{name} restarted and ready")
        after = event()
        await self.publish(broker, after)
        await eventually(
            lambda: after.id in self.handler.handled, message=f"the restarted {name} handles"
        )


def event(subject: str = "one-partition") -> Envelope:
    """A probe event; the same subject keeps Kafka records on one partition, in order."""
    return new_envelope(type=TYPE, source="switchyard/probe", subject=subject, data={})


@pytest.fixture
async def probe(stack, database, names) -> AsyncIterator[Probe]:
    rabbit = RabbitBus(stack.amqp_url, prefix=names)
    kafka = KafkaBus(stack.kafka_bootstrap, prefix=names)
    settings = settings_for(
        UsersSettings, "users", stack, database, names, consumer_stall_seconds=STALL_SECONDS
    )
    handler = Handler()
    handler.gate.set()
    app = create_service_app(title="probe", settings=settings, wiring=handler.wiring, routers=[])
    async with rabbit, kafka:
        try:
            async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
                await app.state.runtime.wait_assigned()
                try:
                    yield Probe(app, http, rabbit, kafka, handler)
                finally:
                    handler.gate.set()  # a held handler would keep the service from stopping
        finally:
            await delete_work_queues(stack.amqp_url, names + QUEUE)


async def kill(consumer: RabbitConsumer | KafkaConsumer) -> None:
    """What a crash does to the consumer: its Kafka task ends, its RabbitMQ channel closes."""
    if isinstance(consumer, KafkaConsumer):
        assert consumer._task is not None
        consumer._task.cancel()
        await asyncio.wait([consumer._task])
    else:
        await consumer._channel.close()


def held_restarts(consumer, monkeypatch) -> asyncio.Event:
    """The supervisor's restart waits until the returned event is set, so the 503 in between
    can be seen."""
    may_restart = asyncio.Event()
    restart = consumer.restart

    async def held_restart() -> None:
        await may_restart.wait()
        await restart()

    monkeypatch.setattr(consumer, "restart", held_restart)
    return may_restart


@pytest.mark.parametrize("broker", ["rabbit", "kafka"])
async def test_a_dead_consumer_is_503_until_the_supervisor_restarted_it(probe, broker, monkeypatch):
    consumer = probe.consumer(broker)
    name = check_name(consumer)
    assert await probe.ready()
    may_restart = held_restarts(consumer, monkeypatch)

    await kill(consumer)
    status, checks = await probe.readiness()
    assert status == 503
    expected = "its task was cancelled" if broker == "kafka" else "its channel is closed"
    assert checks[name] == f"ConsumerDead: {expected}"
    assert checks["database"] == checks["rabbitmq"] == checks["kafka"] == "ok"

    may_restart.set()
    await probe.handles_again(broker, name)


@pytest.mark.parametrize("broker", ["rabbit", "kafka"])
async def test_a_consumer_stuck_on_a_message_is_503_until_it_moves_again(probe, broker):
    name = check_name(probe.consumer(broker))
    assert await probe.ready()
    probe.handler.gate.clear()
    held, behind = event(), event()
    await probe.publish(broker, held, behind)
    await eventually(
        lambda: held.id in probe.handler.started, message="the handler holds the first"
    )

    async def stalled() -> dict[str, str]:
        status, checks = await probe.readiness()
        return checks if status == 503 else {}

    checks = await eventually(stalled, timeout=20, message=f"{name} reported stalled")
    assert checks[name].startswith("ConsumerStalled: 2 messages waiting, none finished for ")
    assert checks["database"] == checks["rabbitmq"] == checks["kafka"] == "ok"
    assert probe.handler.handled == []

    probe.handler.gate.set()
    await eventually(probe.ready, timeout=20, message=f"{name} ready again")
    assert sorted(probe.handler.handled) == sorted([held.id, behind.id])


async def test_consumer_checks_are_listed_by_broker_and_name(probe):
    status, checks = await probe.readiness()
    assert status == 200
    assert checks[f"consumer:rabbit:{QUEUE}"] == checks[f"consumer:kafka:{GROUP}"] == "ok"


async def test_a_kafka_member_whose_fetcher_ended_is_restarted(probe, monkeypatch):
    """uvloop raises RuntimeError when aiokafka writes to a connection the broker closed, and
    aiokafka's fetcher task dies of it without a word (aio-libs/aiokafka#1038)."""
    consumer = probe.consumer("kafka")
    name = check_name(consumer)
    may_restart = held_restarts(consumer, monkeypatch)
    client = consumer._consumer
    fetcher = client._fetcher.error_future
    for (_node, group), connection in client._client._conns.items():
        if group is ConnectionGroup.DEFAULT:  # fetches, not the group coordinator's heartbeats
            monkeypatch.setattr(connection._writer, "write", closed_by_the_broker)
    # The broker closed a fetch connection at the moment the fetcher wrote its next request.
    await eventually(fetcher.done, timeout=10, message="the fetcher wrote and died")

    why = await probe.reported_dead(name)
    # Seen broken by readiness, or crashed by it: whichever of the two came first.
    assert why.startswith(("ConsumerDead: its client is broken: ClientTaskEnded(",
                           "ConsumerDead: crashed: ClientTaskEnded("))  # fmt: skip
    assert "fetcher" in why and "RuntimeError" in why

    may_restart.set()
    await probe.handles_again("kafka", name)


async def test_a_kafka_member_stuck_in_a_commit_whose_metadata_never_comes_is_restarted(
    probe, monkeypatch
):
    """The same uvloop error kills the client's metadata task, and a commit that needs the
    coordinator again waits for fresh metadata for ever: the member's task lives on, stuck,
    and the client's stop() cannot finish either."""
    consumer = probe.consumer("kafka")
    name = check_name(consumer)
    may_restart = held_restarts(consumer, monkeypatch)
    monkeypatch.setattr("shared.kafka.consumer.LEAVE_WITHIN", 1.0)
    client = consumer._consumer
    probe.handler.gate.clear()
    held = event()
    await probe.publish("kafka", held)
    await eventually(lambda: held.id in probe.handler.started, message="the handler holds it")

    async def broker_closed_it(*_args) -> bool:
        closed_by_the_broker(b"")
        return False

    monkeypatch.setattr(client._client, "_metadata_update", broker_closed_it)
    client._client.force_metadata_update()  # asked for by the fetcher after a reset
    await eventually(client._client._sync_task.done, message="the metadata task died")
    # The coordinator's connection was reset too, and looking it up again fails for a while.
    monkeypatch.setattr(client._client, "coordinator_lookup", _no_coordinator_yet)
    client._coordinator.coordinator_dead()
    probe.handler.gate.set()  # the record is handled; its commit waits for metadata
    await eventually(lambda: held.id in probe.handler.handled, message="the record handled")
    lookup = client._coordinator._coordinator_lookup_lock
    await eventually(lookup.locked, message="the commit looks for the coordinator")
    assert consumer._busy.locked()  # the batch is not over: its commit waits

    why = await probe.reported_dead(name)
    assert why.startswith("ConsumerDead: its client is broken: ClientTaskEnded(")
    assert "metadata" in why and "RuntimeError" in why
    assert not consumer._task.done()  # alive, and stuck in the commit

    may_restart.set()
    await probe.handles_again("kafka", name)
    # The old client left nothing running: no heartbeat, no connection.
    assert client._coordinator._heartbeat_task is None
    assert not any(c.connected() for c in client._client._conns.values())


async def test_a_restart_whose_new_client_neither_joins_nor_stops_still_ends(probe, monkeypatch):
    """A restart has a time limit. Its new client may wait in start() for an assignment that a
    dead coordinator task never brings, and that client's stop() may not end even when
    cancelled: the restart must end all the same, so that the next one can work."""
    consumer = probe.consumer("kafka")
    name = check_name(consumer)
    restart = consumer.restart
    may_restart = held_restarts(consumer, monkeypatch)  # the supervisor's, for afterwards
    monkeypatch.setattr("shared.kafka.consumer.LEAVE_WITHIN", 1.0)
    let_go = asyncio.Event()

    class NeverJoins(AIOKafkaConsumer):
        async def start(self) -> None:
            await asyncio.Event().wait()

        async def stop(self) -> None:  # deaf to cancel until let go
            while not let_go.is_set():
                with suppress(asyncio.CancelledError):
                    await let_go.wait()
            await super().stop()

    monkeypatch.setattr("shared.kafka.consumer.AIOKafkaConsumer", NeverJoins)
    await kill(consumer)

    async def restart_within_its_limit() -> None:
        async with asyncio.timeout(2):  # as the supervisor does, with a shorter limit
            await restart()

    attempt = asyncio.create_task(restart_within_its_limit())
    try:
        done, _ = await asyncio.wait({attempt}, timeout=30)
        assert attempt in done, "the restart never ended"
        assert isinstance(attempt.exception(), TimeoutError)
    finally:
        monkeypatch.setattr("shared.kafka.consumer.AIOKafkaConsumer", AIOKafkaConsumer)
        let_go.set()  # the stops left behind end now
        await asyncio.wait({attempt})

    may_restart.set()
    await probe.handles_again("kafka", name)


async def _no_coordinator_yet(*_args) -> int:
    raise KafkaConnectionError("the coordinator's connection was reset")


def closed_by_the_broker(data: bytes) -> None:
    """What uvloop's transport does with a write after the peer closed it."""
    raise RuntimeError(
        "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    )
