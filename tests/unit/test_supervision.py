"""A consumer's progress, its readiness verdict, and the supervisor, with a fake consumer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.supervision import (
    ConsumerDead,
    ConsumerStalled,
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
