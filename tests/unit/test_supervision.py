"""A consumer's progress, its readiness verdict, and the supervisor, with fake consumers; the
consumers' own restarts with fake broker clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from shared.kafka import consumer as kafka_consumer
from shared.kafka.consumer import KafkaConsumer
from shared.metrics import CONSUMER_READY
from shared.rabbit import consumer as rabbit_consumer
from shared.rabbit.consumer import RabbitConsumer
from shared.retry import RetryPolicy
from shared.supervision import (
    ConsumerDead,
    ConsumerStalled,
    ConsumerWaiting,
    Progress,
    Supervisor,
    check,
    check_name,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.unit


def test_nothing_waiting_is_never_stalled():
    progress = Progress(finished=0.0)
    assert progress.stalled_for(0, now=1000.0) == 0.0


def test_the_stall_clock_starts_when_a_check_first_sees_messages_waiting():
    progress = Progress(finished=0.0)  # idle for a long time before the messages came
    assert progress.stalled_for(3, now=1000.0) == 0.0
    assert progress.stalled_for(3, now=1007.0) == 7.0


def test_a_finished_message_restarts_the_clock():
    progress = Progress(finished=0.0)
    progress.stalled_for(3, now=1000.0)
    progress.finished = 1005.0
    assert progress.stalled_for(2, now=1007.0) == 2.0


def test_a_check_that_sees_nothing_waiting_forgets_the_earlier_wait():
    progress = Progress(finished=0.0)
    progress.stalled_for(3, now=1000.0)
    progress.stalled_for(0, now=1001.0)
    assert progress.stalled_for(1, now=1050.0) == 0.0


@dataclass
class FakeConsumer:
    """Answers what the supervision asks; `dead` is why it died, `queued` what waits for it."""

    label: str = "probe"
    broker: str = "rabbit"
    dead: str | None = None
    queued: int = 0
    restarts: int = 0
    progress: Progress = field(default_factory=lambda: Progress(finished=0.0))

    def death(self) -> str | None:
        return self.dead

    async def waiting(self) -> int:
        return self.queued

    async def restart(self) -> None:
        self.restarts += 1
        self.dead = None


async def test_check_names_a_dead_consumer():
    consumer = FakeConsumer(dead="its channel is closed")
    with pytest.raises(ConsumerDead, match="its channel is closed"):
        await check(consumer, stall_after=60, now=1.0)
    assert check_name(consumer) == "consumer:rabbit:probe"


async def test_check_says_how_many_messages_wait_for_a_stalled_consumer():
    consumer = FakeConsumer(queued=4)
    await check(consumer, stall_after=60, now=1000.0)  # first seen waiting: not yet stalled
    with pytest.raises(ConsumerStalled, match="4 messages waiting, none finished for 60s"):
        await check(consumer, stall_after=60, now=1060.0)


async def test_check_passes_a_consumer_that_keeps_finishing_messages():
    consumer = FakeConsumer(queued=4)
    await check(consumer, stall_after=60, now=1000.0)
    consumer.progress.finished = 1050.0
    await check(consumer, stall_after=60, now=1100.0)


async def test_the_supervisor_restarts_a_dead_consumer_and_leaves_a_live_one():
    dead, alive = FakeConsumer(dead="its task was cancelled"), FakeConsumer(label="other")
    async with Supervisor([dead, alive], every=0.01):
        await eventually(lambda: dead.restarts == 1, message="the dead consumer restarted")
    assert dead.death() is None
    assert alive.restarts == 0


@dataclass
class AwayConsumer(FakeConsumer):
    """A consumer whose broker is away: not dead, but it cannot say what waits for it."""

    async def waiting(self) -> int:
        raise ConsumerWaiting("its connection is down")


async def test_check_marks_a_consumer_not_ready_while_its_broker_is_away():
    consumer = AwayConsumer(label="away")
    labels = {"broker": consumer.broker, "consumer": consumer.label}
    CONSUMER_READY.labels(**labels).set(1)
    with pytest.raises(ConsumerWaiting):
        await check(consumer, stall_after=60, now=1.0)
    assert REGISTRY.get_sample_value("switchyard_consumer_ready", labels) == 0


# RabbitMQ: a closed channel is restarted only while its connection is up.


@dataclass
class FakeRobustConnection:
    connected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeRobustChannel:
    """A closed channel that the robust connection never restores; counts reopens."""

    is_closed: bool = True
    reopens: int = 0

    async def ready(self) -> None:
        await asyncio.Event().wait()

    async def reopen(self) -> None:
        self.reopens += 1


def rabbit_member(connected: bool) -> tuple[RabbitConsumer, FakeRobustChannel]:
    connection, channel = FakeRobustConnection(), FakeRobustChannel()
    if connected:
        connection.connected.set()
    fakes: Any = (connection, channel)
    return RabbitConsumer(*fakes, "work", "work", None, RetryPolicy((1.0,)), 1.0), channel


async def test_a_rabbit_consumer_waits_for_its_broker_instead_of_dying():
    member, _ = rabbit_member(connected=False)
    assert member.death() is None  # the supervisor leaves it to the robust connection
    with pytest.raises(ConsumerWaiting):
        await member.waiting()  # readiness still says it does not consume


async def test_a_rabbit_channel_closed_on_a_live_connection_is_dead():
    member, _ = rabbit_member(connected=True)
    assert member.death() == "its channel is closed"


async def test_a_rabbit_restart_never_reopens_while_the_connection_is_down(monkeypatch):
    monkeypatch.setattr(rabbit_consumer, "RESTORE_WAIT", 0.01)
    member, channel = rabbit_member(connected=False)
    with pytest.raises(ConsumerWaiting):
        await member.restart()
    assert channel.reopens == 0  # the reconnect restores the channel; a reopen would race it


# Kafka: a restart replaces the client and its fetch task, leaving neither behind.


@dataclass
class FakeKafka:
    """What the fake clients reach: whether the broker is up, whether the group assigns
    partitions to a member that joins, and every client made."""

    up: bool = True
    assigns: bool = True
    clients: list[FakeKafkaClient] = field(default_factory=list)


class FakeKafkaClient:
    """Stands in for AIOKafkaConsumer: its fetches wait until cancelled; notes its life."""

    def __init__(self, kafka: FakeKafka, **settings: Any) -> None:
        self._kafka, self._listener = kafka, None
        self.stopped, self.fetching = False, 0  # fetching: getmany calls in progress
        kafka.clients.append(self)
        # The parts of aiokafka's client that the member looks into: none of their tasks ends.
        self._fetcher = SimpleNamespace(error_future=None, close=_nothing, _pending_tasks=set())
        self._client = SimpleNamespace(_sync_task=None, close=_nothing)
        self._coordinator = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self._listener = listener

    async def start(self) -> None:
        if not self._kafka.up:
            raise KafkaConnectionError("broker down")
        if self._kafka.assigns:
            await self._listener.on_partitions_assigned(set())

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, **limits: Any) -> dict[Any, Any]:
        self.fetching += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.fetching -= 1
        return {}


async def _nothing() -> None: ...


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    monkeypatch.setattr(kafka_consumer, "AIOKafkaConsumer", partial(FakeKafkaClient, fake))
    return fake


def kafka_member() -> KafkaConsumer:
    async def receiver(envelope: Any) -> None: ...

    dead_letters: Any = None  # no record is handled here
    return KafkaConsumer(
        "kafka:9092", ["records"], "group", receiver,
        retry=RetryPolicy((1.0,)), dead_letters=dead_letters,
    )  # fmt: skip


async def test_a_kafka_client_that_fails_to_start_is_closed(kafka):
    kafka.up = False
    member = kafka_member()
    for _ in range(2):  # the supervisor tries again each round while the broker is down
        with pytest.raises(KafkaConnectionError):
            await member.start()
    assert [c.stopped for c in kafka.clients] == [True, True]


async def test_a_kafka_restart_that_timed_out_leaves_no_second_fetch_task(kafka):
    member = kafka_member()
    await member.start()
    await eventually(lambda: kafka.clients[0].fetching == 1, message="the first client fetches")
    kafka.assigns = False  # the replacement joins, but the group never assigns it
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await member.restart()
    await eventually(lambda: kafka.clients[1].fetching == 1, message="the replacement fetches")
    kafka.assigns = True
    await member.restart()  # the supervisor's next round
    await eventually(lambda: kafka.clients[2].fetching == 1, message="the third client fetches")
    assert [c.stopped for c in kafka.clients] == [True, True, False]
    assert [c.fetching for c in kafka.clients] == [0, 0, 1]  # one fetch loop, on the live client
    assert member.death() is None
    await member.stop()
