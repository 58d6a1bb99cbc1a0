"""The Kafka adapter against a real Apache Kafka broker: delivery, order, commits, retries, DLT."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from shared.channels import Channel
from shared.envelope import Envelope, encode, new_envelope
from shared.errors import DependencyUnavailable, PermanentError, PublishError, TransientError
from shared.kafka import KafkaBus, KafkaConsumer
from shared.kafka.settle import until_topics_served
from shared.retry import RetryPolicy
from switchyard.stack.processes import free_port
from switchyard.stack.servers import Kafka
from tests.support.eventually import eventually
from tests.support.kafka_probe import committed, header_map, read_records, record_count
from tests.support.services import QUICK_GROUPS

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
QUICK_RETRY = RetryPolicy(delays=(0.01, 0.01))  # three attempts
ORDERS = Channel.kafka("orders.events")

StartMember = Callable[..., Awaitable[KafkaConsumer]]


@pytest.fixture
async def bus(stack, names: str) -> AsyncIterator[KafkaBus]:
    async with KafkaBus(stack.kafka_bootstrap, prefix=names, group_timings=QUICK_GROUPS) as bus:
        yield bus


@pytest.fixture
async def start_member(bus: KafkaBus) -> AsyncIterator[StartMember]:
    """Start a group member and wait for its assignment; every one is stopped afterwards."""
    members: list[KafkaConsumer] = []

    async def start(topic: str, group: str, handler, retry: RetryPolicy = QUICK_RETRY, **options):
        member = await bus.consume([topic], group, handler, retry=retry, **options)
        members.append(member)
        await member.wait_assigned()
        return member

    yield start
    for member in members:
        await member.stop()


def order_event(subject: str, **data: object) -> Envelope:
    return new_envelope(type="order.created", source="orders", subject=subject, data=data)


def metric(name: str, channel: str = "orders.events") -> float:
    value = REGISTRY.get_sample_value(name, {"broker": "kafka", "channel": channel})
    return value or 0.0


async def test_published_envelope_arrives_intact_with_key_and_headers(bus, start_member, names):
    await bus.ensure_topics({"users.events": 3})
    received: dict[str, Envelope] = {}

    async def handle(envelope: Envelope) -> None:
        received[envelope.id] = envelope

    await start_member("users.events", "orders", handle)
    by_subject = new_envelope(
        type="user.registered", source="users", subject="user-1", data={"email": "a@example.org"}
    )
    by_key = new_envelope(type="user.updated", source="users", subject="user-2", data={})
    channel = Channel.kafka("users.events")
    await bus.publish(channel, by_subject, headers={"traceparent": "00-abc-def-01"})
    await bus.publish(channel, by_key, key="explicit-key")

    await eventually(lambda: len(received) == 2)
    assert received == {by_subject.id: by_subject, by_key.id: by_key}

    records = await read_records(bus.bootstrap, names + "users.events", partitions=3, count=2)
    by_id = {header_map(r)["ce_id"]: r for r in records}
    first, second = by_id[by_subject.id], by_id[by_key.id]
    assert first.key == b"user-1"
    assert second.key == b"explicit-key"
    assert header_map(first) == {
        "content-type": "application/cloudevents+json",
        "ce_type": "user.registered",
        "ce_id": by_subject.id,
        "traceparent": "00-abc-def-01",
    }
    assert first.value == encode(by_subject)


async def test_a_member_reads_new_topics_at_once_with_no_request_refused(bus, names, caplog):
    # A new topic's partitions take a moment to learn their leaders, and a new cluster to make
    # its offsets topic; a member that asks before then is refused, and aiokafka logs each
    # refusal as an error. After the two waits, a member joins with nothing refused (the
    # topics are made last, so the member asks for their offsets the moment they are served).
    topics = [f"fresh{n}.events" for n in range(4)]
    await bus.until_coordinated(["fresh"])
    await bus.ensure_topics(dict.fromkeys(topics, 3))  # the member asks for offsets right after
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.subject)

    member = await bus.consume(topics, "fresh", handle, retry=QUICK_RETRY)
    try:
        for topic in topics:
            await bus.publish(Channel.kafka(topic), order_event(topic))
        await eventually(lambda: sorted(handled) == topics, message="one record of each topic")
    finally:
        await member.stop()
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert refused == []


@pytest.fixture
def new_cluster(stack, tmp_path_factory) -> Iterator[str]:
    """A Kafka node of its own, just formatted: no group has asked for a coordinator yet."""
    if stack.backend != "native":
        pytest.skip(f"a private Kafka node runs from the native stack's jars, not {stack.backend}")
    port = free_port()
    controller_port = next(p for p in iter(free_port, None) if p != port)
    node = Kafka(tmp_path_factory.mktemp("new-cluster"), port, controller_port)
    try:
        node.start()
        yield node.bootstrap
    finally:
        node.stop()


async def test_the_first_member_of_a_new_cluster_joins_with_nothing_refused(new_cluster, caplog):
    # On a new cluster the first group makes the broker create its offsets topic, whose
    # partitions the coordinator then loads; a member that joins before then is refused, and
    # aiokafka logs each refusal ("Marking the coordinator dead", a warning). After the waits,
    # the first member joins and reads with no warning logged.
    caplog.set_level(logging.WARNING)
    async with KafkaBus(new_cluster, prefix="new.", group_timings=QUICK_GROUPS) as bus:
        await bus.ensure_topics({"orders.events": 3})
        assert await bus.until_coordinated(["users"])
        handled: list[str] = []

        async def handle(envelope: Envelope) -> None:
            handled.append(envelope.subject)

        member = await bus.consume(["orders.events"], "users", handle, retry=QUICK_RETRY)
        try:
            await bus.publish(ORDERS, order_event("order-1"))
            await eventually(lambda: handled == ["order-1"], message="the record read")
        finally:
            await member.stop()
    refused = [r.getMessage() for r in caplog.records
               if r.levelno >= logging.WARNING and r.name.startswith("aiokafka")]  # fmt: skip
    assert refused == []


async def test_topics_that_do_not_answer_are_waited_for_a_bounded_while(bus, names):
    # Asked for two partitions of a topic that has one, the wait can never be met: it gives up
    # at its deadline (with a warning), and the service starts as it would have without it.
    await bus.ensure_topics({"single.events": 1})
    topic = names + "single.events"

    served = await until_topics_served(bus.bootstrap, {topic: 2}, client_id="test", timeout=0.5)

    assert served is False
    assert await until_topics_served(bus.bootstrap, {topic: 1}, client_id="test") is True


async def test_one_keys_records_share_a_partition_and_are_handled_in_order(
    bus, start_member, names
):
    await bus.ensure_topics({"orders.events": 3})
    handled: list[tuple[str, int]] = []

    async def handle(envelope: Envelope) -> None:
        handled.append((envelope.subject, envelope.data["seq"]))

    await start_member("orders.events", "payments", handle)
    subjects = [f"order-{n}" for n in range(6)]
    for seq in range(10):
        for subject in subjects:
            await bus.publish(ORDERS, order_event(subject, seq=seq))

    await eventually(lambda: len(handled) == 60)
    for subject in subjects:
        assert [seq for s, seq in handled if s == subject] == list(range(10))

    records = await read_records(bus.bootstrap, names + "orders.events", partitions=3, count=60)
    partitions = {
        subject: {r.partition for r in records if r.key == subject.encode()} for subject in subjects
    }
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert len(set().union(*partitions.values())) > 1, "keys should spread over partitions"


async def test_records_a_killed_member_did_not_commit_go_to_another_member(
    bus, start_member, names
):
    await bus.ensure_topics({"orders.events": 1})
    group, topic = names + "payments", names + "orders.events"
    events = [order_event(f"order-{n}", seq=n) for n in range(5)]
    ids = [e.id for e in events]

    member = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.kafka_member",
        bus.bootstrap, names, "orders.events", "payments", ids[2],
        cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    reported: list[dict] = []

    async def read_until(key: str) -> None:
        async with asyncio.timeout(30):
            while key not in (reported[-1] if reported else {}):
                line = await member.stdout.readline()
                assert line, f"member exited early after {reported}"
                reported.append(json.loads(line))

    try:
        await read_until("assigned")
        for event in events[:2]:  # handled and committed before the rest exist
            await bus.publish(ORDERS, event)
        await eventually(lambda: _committed_is(bus, group, topic, [2]))
        for event in events[2:]:
            await bus.publish(ORDERS, event)
        await read_until("holding")
        assert [r["handled"] for r in reported if "handled" in r] == ids[:2]
        assert reported[-1] == {"holding": ids[2]}
    finally:
        os.kill(member.pid, signal.SIGKILL)
        await member.wait()

    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.id)

    await start_member("orders.events", "payments", handle)
    await eventually(lambda: len(handled) >= 3, timeout=15)
    assert handled == ids[2:]
    await eventually(lambda: _committed_is(bus, group, topic, [5]))


async def test_transient_failure_is_retried_then_succeeds(bus, start_member, names):
    await bus.ensure_topics({"orders.events": 1})
    attempts: list[str] = []
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if len(attempts) < 3:
            raise TransientError("database busy")
        handled.append(envelope.id)

    retried_before = metric("switchyard_messages_retried_total")
    await start_member("orders.events", "payments", handle)
    event = order_event("order-1")
    await bus.publish(ORDERS, event)

    await eventually(lambda: handled == [event.id])
    assert attempts == [event.id] * 3
    assert metric("switchyard_messages_retried_total") - retried_before == 2
    group, topic = names + "payments", names + "orders.events"
    await eventually(lambda: _committed_is(bus, group, topic, [1]))
    assert await record_count(bus.bootstrap, topic + ".dlt", partitions=1) == 0


async def test_a_database_outage_is_waited_out_and_never_dead_letters(bus, start_member, names):
    await bus.ensure_topics({"orders.events": 1})
    outage = QUICK_RETRY.attempts + 2  # longer than the record's whole retry budget
    attempts: list[str] = []

    async def handle(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if len(attempts) <= outage:
            raise DependencyUnavailable("database unavailable: the server is starting up")

    retried_before = metric("switchyard_messages_retried_total")
    await start_member("orders.events", "users", handle)
    event = order_event("order-1")
    await bus.publish(ORDERS, event)

    group, topic = names + "users", names + "orders.events"
    await eventually(lambda: _committed_is(bus, group, topic, [1]))
    assert attempts == [event.id] * (outage + 1)
    assert metric("switchyard_messages_retried_total") == retried_before  # none was counted
    assert await record_count(bus.bootstrap, topic + ".dlt", partitions=1) == 0


async def test_persistent_failure_is_dead_lettered_and_the_next_record_handled(
    bus, start_member, names
):
    await bus.ensure_topics({"orders.events": 1})
    attempts: list[str] = []
    handled: list[str] = []
    failing, following = order_event("order-bad"), order_event("order-good")

    async def handle(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if envelope.id == failing.id:
            raise RuntimeError("database unavailable")
        handled.append(envelope.id)

    parked_before = metric("switchyard_messages_dead_lettered_total")
    await start_member("orders.events", "payments", handle)
    await bus.publish(ORDERS, failing)
    await bus.publish(ORDERS, following)

    await eventually(lambda: handled == [following.id])
    assert attempts == [failing.id] * 3 + [following.id]
    topic = names + "orders.events"
    [parked] = await read_records(bus.bootstrap, topic + ".dlt", partitions=1, count=1)
    assert parked.value == encode(failing)
    assert parked.key == b"order-bad"
    headers = header_map(parked)
    assert headers["ce_id"] == failing.id  # the original headers travel along
    parked_at = datetime.fromisoformat(headers.pop("x-parked-at"))
    assert parked_at <= datetime.now(UTC)
    assert {k: v for k, v in headers.items() if k.startswith("x-")} == {
        "x-error-type": "RuntimeError",
        "x-error-message": "database unavailable",
        "x-attempts": "3",
        "x-original-topic": topic,
        "x-original-partition": "0",
        "x-original-offset": "0",
    }
    assert metric("switchyard_messages_dead_lettered_total") - parked_before == 1
    await eventually(lambda: _committed_is(bus, names + "payments", topic, [2]))


async def test_permanent_error_is_dead_lettered_without_retry(bus, start_member, names):
    await bus.ensure_topics({"orders.events": 1})
    attempts: list[str] = []

    async def handle(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        raise PermanentError("order total is negative")

    await start_member("orders.events", "payments", handle)
    event = order_event("order-1")
    await bus.publish(ORDERS, event)

    topic = names + "orders.events"
    [parked] = await read_records(bus.bootstrap, topic + ".dlt", partitions=1, count=1)
    headers = header_map(parked)
    assert (headers["x-error-type"], headers["x-attempts"]) == ("PermanentError", "1")
    assert headers["x-error-message"] == "order total is negative"
    assert attempts == [event.id]
    await eventually(lambda: _committed_is(bus, names + "payments", topic, [1]))


@pytest.mark.parametrize(
    "poison",
    [b"not json at all", b'{"hello": "world"}'],
    ids=["not-json", "not-an-envelope"],
)
async def test_poison_record_is_dead_lettered_at_once(bus, start_member, names, poison):
    await bus.ensure_topics({"orders.events": 1})
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.id)

    await start_member("orders.events", "payments", handle)
    topic = names + "orders.events"
    await bus.producer.send(topic, poison, key=b"order-1", headers=[])
    following = order_event("order-1")
    await bus.publish(ORDERS, following)

    await eventually(lambda: handled == [following.id])
    [parked] = await read_records(bus.bootstrap, topic + ".dlt", partitions=1, count=1)
    assert parked.value == poison
    headers = header_map(parked)
    assert (headers["x-error-type"], headers["x-attempts"]) == ("MalformedMessage", "1")
    assert headers["x-original-offset"] == "0"


async def test_records_of_types_the_group_does_not_read_are_committed_unread(
    bus, start_member, names
):
    await bus.ensure_topics({"orders.events": 1})
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.id)

    await start_member("orders.events", "users", handle, types={"order.paid"})
    topic = names + "orders.events"
    unread_before = metric("switchyard_messages_unread_total")
    paid = order_event("order-1").model_copy(update={"type": "order.paid"})
    await bus.publish(ORDERS, paid)
    await eventually(lambda: handled == [paid.id])
    await bus.publish(ORDERS, order_event("order-1"))  # an order.created envelope
    # Not even decoded: a body no one could read is left to the groups that read its type.
    await bus.producer.send(topic, b"not json at all", key=b"order-1",
                            headers=[("ce_type", b"order.created")])  # fmt: skip

    # The commit passes the records left unread too, so the group never fetches them again.
    await eventually(lambda: _committed_is(bus, names + "users", topic, [3]))
    assert handled == [paid.id]
    assert metric("switchyard_messages_unread_total") - unread_before == 2
    assert await record_count(bus.bootstrap, topic + ".dlt", partitions=1) == 0


async def test_graceful_stop_finishes_and_commits_the_record_in_flight(bus, start_member, names):
    await bus.ensure_topics({"orders.events": 1})
    in_flight, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []
    first, second = order_event("order-1"), order_event("order-2")

    async def handle_slowly(envelope: Envelope) -> None:
        if envelope.id == first.id:
            in_flight.set()
            await release.wait()
        handled.append(envelope.id)

    member = await start_member("orders.events", "payments", handle_slowly)
    await bus.publish(ORDERS, first)
    await bus.publish(ORDERS, second)
    await eventually(in_flight.is_set)
    stopping = asyncio.create_task(member.stop())
    await eventually(lambda: member.stopping)
    release.set()
    await stopping
    assert handled == [first.id]  # the record in flight finished, nothing after it started
    topic = names + "orders.events"
    assert await committed(bus.bootstrap, names + "payments", topic, partitions=1) == [1]

    seen_by_successor: list[str] = []

    async def handle(envelope: Envelope) -> None:
        seen_by_successor.append(envelope.id)

    await start_member("orders.events", "payments", handle)
    third = order_event("order-3")
    await bus.publish(ORDERS, third)
    await eventually(lambda: len(seen_by_successor) >= 2)
    assert seen_by_successor == [second.id, third.id]


async def _committed_is(bus: KafkaBus, group: str, topic: str, expected: list[int]) -> bool:
    return await committed(bus.bootstrap, group, topic, partitions=len(expected)) == expected


async def test_a_group_keeps_consuming_through_a_broker_crash_and_restart(
    bus, start_member, names, stack, servers
):
    await bus.ensure_topics({"orders.events": 3})
    group, topic = names + "users", names + "orders.events"
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.id)

    await start_member("orders.events", "users", handle)
    before = [order_event(f"order-{n}") for n in range(6)]
    for event in before:
        await bus.publish(ORDERS, event)
    await eventually(lambda: _committed_in_all(bus, group, topic, len(before)))
    offsets = await committed(stack.kafka_bootstrap, group, topic, partitions=3)

    await asyncio.to_thread(servers.crash, "kafka")
    await asyncio.to_thread(servers.start, ["kafka"])

    # Records and committed offsets are still there after the crash (the group coordinator
    # answers for its offsets once it has read them back from its log).
    async def offsets_kept() -> bool:
        return await committed(stack.kafka_bootstrap, group, topic, partitions=3) == offsets

    await eventually(offsets_kept, timeout=30, message="the committed offsets, read back")
    assert await record_count(stack.kafka_bootstrap, topic, partitions=3) == len(before)
    # The same producer and the same member, neither restarted, find the broker again.
    after = [order_event(f"order-{n}") for n in range(6)]
    for event in after:
        await eventually(lambda e=event: _published(bus, e), timeout=60, message="a publish")
    await eventually(
        lambda: _committed_in_all(bus, group, topic, len(before) + len(after)), timeout=60
    )
    assert set(handled) == {e.id for e in before + after}
    # The offsets committed before the crash held: no record from before it was handled again.
    # (One handled after it may be, if its commit met the group re-forming: the inbox's case.)
    assert all(Counter(handled)[e.id] == 1 for e in before)
    assert await record_count(stack.kafka_bootstrap, topic, partitions=3) == 12


async def _committed_in_all(bus: KafkaBus, group: str, topic: str, records: int) -> bool:
    """The group committed past `records` records over the topic's three partitions."""
    offsets = await committed(bus.bootstrap, group, topic, partitions=3)
    return sum(max(offset, 0) for offset in offsets) == records


async def _published(bus: KafkaBus, event: Envelope) -> bool:
    """One publish attempt; False while the broker is not back (the outbox would try again)."""
    try:
        await bus.publish(ORDERS, event)
    except PublishError:
        return False
    return True


async def test_a_producer_whose_metadata_task_died_is_replaced_and_the_send_goes_through(
    bus, names
):
    """Under uvloop a write to a connection the broker closed raises RuntimeError, which kills
    the producer's metadata task (aio-libs/aiokafka#1038): a send to a topic the producer has
    no metadata for would then wait for ever."""
    await bus.ensure_topics({"orders.events": 1})
    old = bus.producer._producer

    async def broker_closed_it(*_args) -> bool:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    old.client._metadata_update = broker_closed_it
    old.client.force_metadata_update()
    await eventually(old.client._sync_task.done, message="the metadata task died")

    event = order_event("order-after")
    await bus.publish(ORDERS, event)  # raises PublishError if it waited for metadata
    assert bus.producer._producer is not old
    assert not any(c.connected() for c in old.client._conns.values())  # the old one is closed
    records = await read_records(bus.bootstrap, names + "orders.events", partitions=1, count=1)
    assert [json.loads(r.value)["id"] for r in records] == [event.id]
