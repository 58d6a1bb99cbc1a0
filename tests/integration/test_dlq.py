"""Dead letters on real brokers: parked, listed, replayed exactly as they were, purged, measured."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiormq.exceptions import ChannelPreconditionFailed
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from shared import failure_headers as fh
from shared.channels import Channel
from shared.dead_letters import KafkaDeadLetters, RabbitDeadLetters
from shared.dead_letters.watch import DeadLetterWatch
from shared.envelope import CONTENT_TYPE, Envelope, encode, new_envelope
from shared.errors import PublishError
from shared.kafka import KafkaBus
from shared.rabbit import RabbitBus, parking_queue
from shared.rabbit import topology as rabbit_topology
from shared.rabbit.confirm import confirmed_publish
from shared.retry import RetryPolicy
from switchyard.cli import app
from switchyard.stack.inspect import kafka_lag, queue_depths
from tests.support.eventually import eventually
from tests.support.kafka_probe import committed, header_map, read_records
from tests.support.proxy import TcpProxy
from tests.support.services import QUICK_GROUPS

pytestmark = pytest.mark.integration

# The real wiring's names, so `make status` and the CLI find them behind the test's prefix.
QUEUE, EXCHANGE, KEY = "payments.payment-requests", "payments.commands", "payment.requested"
TOPIC = "users.events"
FAST = RetryPolicy(delays=(0.05, 0.1))  # three attempts
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def rabbit(stack, names) -> AsyncIterator[RabbitBus]:
    async with RabbitBus(stack.amqp_url, prefix=names, confirm_timeout=5.0) as bus:
        await bus.declare_exchange(EXCHANGE, "direct")
        await bus.declare_queue(QUEUE, exchange=EXCHANGE, routing_keys=[KEY], retry=FAST)
        yield bus
    async with await aio_pika.connect(stack.amqp_url) as connection:
        channel = await connection.channel()
        work = names + QUEUE
        for name in [work, parking_queue(work), *(rabbit_topology.retry_queue(work, d) for d in FAST.delays)]:  # fmt: skip
            await channel.queue_delete(name)
        await channel.exchange_delete(names + EXCHANGE)


@pytest.fixture
async def raw(stack) -> AsyncIterator[AbstractChannel]:
    """A plain channel: a robust one reports stale queue depths."""
    async with await aio_pika.connect(stack.amqp_url) as connection:
        yield await connection.channel()


@pytest.fixture
async def kafka(stack, names) -> AsyncIterator[KafkaBus]:
    async with KafkaBus(stack.kafka_bootstrap, prefix=names, group_timings=QUICK_GROUPS) as bus:
        yield bus


def event(kind: str = "payment.requested") -> Envelope:
    subject = str(uuid.uuid4())
    return new_envelope(type=kind, source="orders", subject=subject, data={"order_id": subject})


async def depth(raw: AbstractChannel, queue: str) -> int:
    return (await raw.declare_queue(queue, passive=True)).declaration_result.message_count


async def park_in_rabbit(raw: AbstractChannel, names: str, envelope: Envelope) -> None:
    """A message in the `.dlq` as the consumer parks it after three failed attempts."""
    headers = {
        fh.ORIGINAL_EXCHANGE: names + EXCHANGE,
        fh.ORIGINAL_ROUTING_KEY: KEY,
        fh.ATTEMPTS: 3,
        **fh.error_headers(RuntimeError("ledger unavailable")),
        fh.ORIGINAL_QUEUE: QUEUE,
        "traceparent": TRACEPARENT,
    }
    message = aio_pika.Message(
        encode(envelope), headers=headers, content_type=CONTENT_TYPE, message_id=envelope.id
    )
    await raw.default_exchange.publish(message, parking_queue(names + QUEUE))


async def test_rabbit_parked_message_is_listed_then_replayed_as_it_was(rabbit, raw, names):
    envelope = event()

    async def always_fails(_: Envelope) -> None:
        raise RuntimeError("ledger unavailable")

    consumer = await rabbit.consume(QUEUE, always_fails, retry=FAST)
    await rabbit.publish(
        Channel.rabbit(EXCHANGE, KEY), envelope, headers={"traceparent": TRACEPARENT}
    )
    dlq = parking_queue(names + QUEUE)
    await eventually(lambda: _depth_is(raw, dlq, 1), message="message parked")
    await consumer.stop()

    async with RabbitDeadLetters(rabbit._url, prefix=names) as dead_letters:
        [parked] = await dead_letters.browse([QUEUE])
        assert (parked.id, parked.origin, parked.attempts) == (envelope.id, QUEUE, 3)
        assert parked.reason == "RuntimeError: ledger unavailable"
        assert parked.parked_in == parking_queue(QUEUE)
        assert parked.age() >= 0
        await dead_letters.replay(parked)

    assert await depth(raw, dlq) == 0
    queue = await raw.get_queue(names + QUEUE)
    replayed = await eventually(lambda: queue.get(no_ack=True, fail=False))
    assert replayed.body == encode(envelope)
    assert replayed.message_id == envelope.id
    assert replayed.content_type == CONTENT_TYPE
    assert replayed.headers["traceparent"] == TRACEPARENT
    # Where it first arrived stays (the consumer reads its routing key there); why it failed goes.
    assert replayed.headers[fh.ORIGINAL_ROUTING_KEY] == KEY
    assert not {fh.ATTEMPTS, fh.ERROR_TYPE, fh.ERROR_MESSAGE, fh.PARKED_AT} & set(replayed.headers)


async def test_rabbit_replay_without_a_confirm_leaves_the_message_parked(rabbit, raw, names):
    await park_in_rabbit(raw, names, event())
    host_port = rabbit._url.split("@")[1].split("/")[0]
    async with TcpProxy.to(host_port) as proxy:
        url = rabbit._url.replace(host_port, proxy.address)
        dead_letters = RabbitDeadLetters(url, prefix=names, confirm_timeout=2.0)
        await dead_letters.start()
        try:
            [parked] = await dead_letters.browse([QUEUE])
            proxy.cut()
            with pytest.raises(PublishError):
                await dead_letters.replay(parked)
        finally:
            await dead_letters.stop()

    dlq = parking_queue(names + QUEUE)
    await eventually(lambda: _depth_is(raw, dlq, 1), message="message back in the dlq")
    assert await depth(raw, names + QUEUE) == 0


async def test_a_full_work_queue_nacks_publishes_and_the_replay_stays_parked(stack, raw, names):
    # reject-publish: at its length limit the queue refuses (nacks) what is published to it.
    work = names + "full"
    arguments = rabbit_topology.work_queue_arguments(work, 5) | {"x-max-length": 1}
    await raw.declare_queue(parking_queue(work), durable=True, arguments={"x-queue-type": "quorum"})
    await raw.declare_queue(work, durable=True, arguments=arguments)
    async with await aio_pika.connect(stack.amqp_url) as connection:
        confirming = await connection.channel(publisher_confirms=True)
        # A quorum queue enforces its limit once it is over it: one message past it at most.
        accepted = 0
        with pytest.raises(PublishError):  # the outbox relay would try this row again later
            for body in (b"1", b"2", b"3"):
                await confirmed_publish(confirming, "", aio_pika.Message(body), work, confirm_timeout=5)  # fmt: skip
                accepted += 1
        assert accepted in (1, 2)

    envelope = event()
    headers = {**fh.error_headers(RuntimeError("x")), fh.ATTEMPTS: 1, fh.ORIGINAL_QUEUE: "full"}
    message = aio_pika.Message(encode(envelope), headers=headers, message_id=envelope.id)
    await raw.default_exchange.publish(message, parking_queue(work))
    try:
        async with RabbitDeadLetters(stack.amqp_url, prefix=names) as dead_letters:
            [parked] = await dead_letters.browse(["full"])
            with pytest.raises(PublishError):
                await dead_letters.replay(parked)
        await eventually(lambda: _depth_is(raw, parking_queue(work), 1))
        assert await depth(raw, work) == accepted
    finally:
        await raw.queue_delete(work)
        await raw.queue_delete(parking_queue(work))


async def test_work_queues_dead_letter_at_least_once(rabbit, stack, names):
    # The broker holds the arguments: declaring the queue without them is refused.
    arguments = rabbit_topology.work_queue_arguments(names + QUEUE, rabbit_topology.DELIVERY_LIMIT)
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"
    async with await aio_pika.connect(stack.amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(names + QUEUE, durable=True, arguments=arguments)
        older = {k: v for k, v in arguments.items() if k not in ("x-dead-letter-strategy", "x-overflow")}  # fmt: skip
        with pytest.raises(ChannelPreconditionFailed):
            await channel.declare_queue(names + QUEUE, durable=True, arguments=older)


async def test_rabbit_purge_removes_only_the_chosen_message(rabbit, raw, names):
    first, second = event(), event()
    await park_in_rabbit(raw, names, first)
    await park_in_rabbit(raw, names, second)
    async with RabbitDeadLetters(rabbit._url, prefix=names) as dead_letters:
        [chosen] = [d for d in await dead_letters.browse([QUEUE]) if d.id == first.id]
        await dead_letters.purge(chosen)
    async with RabbitDeadLetters(rabbit._url, prefix=names) as dead_letters:
        assert [d.id for d in await dead_letters.browse([QUEUE])] == [second.id]
    assert await depth(raw, names + QUEUE) == 0


async def test_kafka_dead_letter_is_listed_then_replayed_to_its_partition(kafka, names):
    await kafka.ensure_topics({TOPIC: 1})
    envelope = event("user.deleted")

    async def always_fails(_: Envelope) -> None:
        raise RuntimeError("stats table locked")

    member = await kafka.consume([TOPIC], "orders", always_fails, retry=FAST)
    await member.wait_assigned()
    await kafka.publish(Channel.kafka(TOPIC), envelope, headers={"traceparent": TRACEPARENT})
    await read_records(kafka.bootstrap, names + TOPIC + ".dlt", partitions=1, count=1)
    await member.stop()

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        [parked] = await dead_letters.browse([TOPIC])
        assert (parked.id, parked.attempts) == (envelope.id, 3)
        assert parked.origin == f"{TOPIC}[0]@0"
        assert parked.parked_in == f"{TOPIC}.dlt[0]@0"
        assert parked.reason == "RuntimeError: stats table locked"
        assert parked.age() >= 0
        await dead_letters.replay(parked)
        assert await dead_letters.browse([TOPIC]) == []

    original, replayed = await read_records(kafka.bootstrap, names + TOPIC, partitions=1, count=2)
    assert (replayed.value, replayed.key, replayed.partition) == (
        original.value,
        original.key,
        original.partition,
    )
    assert replayed.headers == original.headers  # content-type, ce_type, ce_id, traceparent
    assert header_map(replayed)["ce_id"] == envelope.id
    # Removed means: the dlq group's mark is past it; the record itself stays in the log.
    dlt = names + TOPIC + ".dlt"
    assert await committed(kafka.bootstrap, names + "switchyard-dlq", dlt, partitions=1) == [1]


async def test_kafka_removal_mark_skips_records_removed_out_of_order(kafka, names):
    await kafka.ensure_topics({TOPIC: 1})
    parked = [event("user.deleted") for _ in range(3)]
    for envelope in parked:
        await park_in_kafka(kafka, names, envelope)

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        letters = await dead_letters.browse([TOPIC])
        assert [d.id for d in letters] == [e.id for e in parked]
        await dead_letters.purge(letters[1])
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [parked[0].id, parked[2].id]
        await dead_letters.purge(letters[0])
    dlt = names + TOPIC + ".dlt"
    assert await committed(kafka.bootstrap, names + "switchyard-dlq", dlt, partitions=1) == [2]
    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [parked[2].id]


async def test_kafka_replay_without_an_ack_leaves_the_record_parked(kafka, names):
    # The topic takes no record this large: the broker refuses the replay.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(names + TOPIC, 1, 1, topic_configs={"max.message.bytes": "64"}),
                NewTopic(names + TOPIC + ".dlt", 1, 1),
            ]
        )
        assert [error for _, error, *_ in response.topic_errors] == [0, 0], response
    finally:
        await admin.close()
    envelope = event("user.deleted")
    await park_in_kafka(kafka, names, envelope)

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names, timeout=2.0) as dead_letters:
        [parked] = await dead_letters.browse([TOPIC])
        with pytest.raises(PublishError):
            await dead_letters.replay(parked)
    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [envelope.id]


async def park_in_kafka(kafka: KafkaBus, names: str, envelope: Envelope) -> None:
    """A record in the `.dlt` as the consumer parks it."""
    headers = [
        ("ce_id", envelope.id.encode()),
        *((k, v.encode()) for k, v in fh.error_headers(RuntimeError("stats table locked")).items()),
        (fh.ATTEMPTS, b"3"),
        (fh.ORIGINAL_TOPIC, (names + TOPIC).encode()),
        (fh.ORIGINAL_PARTITION, b"0"),
        (fh.ORIGINAL_OFFSET, b"0"),
    ]
    await kafka.producer.send(
        names + TOPIC + ".dlt", encode(envelope), key=envelope.subject.encode(), headers=headers
    )


def test_cli_lists_shows_and_purges(stack, names):
    import asyncio

    envelope = event()

    async def park() -> None:
        async with await aio_pika.connect(stack.amqp_url) as connection:
            channel = await connection.channel()
            await channel.declare_queue(parking_queue(names + QUEUE), durable=True)
            await park_in_rabbit(channel, names, envelope)

    asyncio.run(park())
    env = {
        "AMQP_URL": stack.amqp_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "BROKER_PREFIX": names,
    }
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["dlq", "list", "--json", "--queue", QUEUE], env=env)
        assert listed.exit_code == 0, listed.output
        [row] = json.loads(listed.stdout)
        assert (row["id"], row["origin"], row["attempts"]) == (envelope.id, QUEUE, 3)
        assert row["reason"] == "RuntimeError: ledger unavailable"
        assert row["age_seconds"] >= 0

        shown = runner.invoke(app, ["dlq", "show", envelope.id], env=env)
        assert shown.exit_code == 0, shown.output
        full = json.loads(shown.stdout)
        assert full["body"]["id"] == envelope.id
        assert full["headers"]["traceparent"] == TRACEPARENT

        refused = runner.invoke(app, ["dlq", "purge", envelope.id], env=env, input="n\n")
        assert refused.exit_code != 0
        purged = runner.invoke(app, ["dlq", "purge", envelope.id, "--yes"], env=env)
        assert purged.exit_code == 0, purged.output
        listed = runner.invoke(app, ["dlq", "list", "--json", "--queue", QUEUE], env=env)
        assert json.loads(listed.stdout) == []
    finally:
        asyncio.run(_delete(stack.amqp_url, parking_queue(names + QUEUE)))


async def test_status_and_gauge_show_the_oldest_dead_letters_age(rabbit, raw, kafka, names):
    await park_in_rabbit(raw, names, event())
    await kafka.ensure_topics({TOPIC: 1})
    await park_in_kafka(kafka, names, event("user.deleted"))

    rabbit_readings = await queue_depths(rabbit._url, prefix=names)
    [dead] = [r for r in rabbit_readings if r.name == parking_queue(names + QUEUE)]
    assert dead.alarm and "1 ready, oldest" in dead.value
    kafka_readings = await kafka_lag(kafka.bootstrap, prefix=names)
    [dlt] = [r for r in kafka_readings if r.name == names + TOPIC + ".dlt"]
    assert dlt.alarm and "1 records, oldest" in dlt.value

    watch = DeadLetterWatch(
        rabbit._url, kafka.bootstrap, prefix=names, queues=[QUEUE], topics=[TOPIC], interval=60
    )
    await watch.measure()
    gauge = "switchyard_dead_letter_oldest_age_seconds"
    rabbit_age = REGISTRY.get_sample_value(gauge, {"broker": "rabbit", "channel": QUEUE + ".dlq"})
    kafka_age = REGISTRY.get_sample_value(gauge, {"broker": "kafka", "channel": TOPIC + ".dlt"})
    assert rabbit_age is not None and rabbit_age > 0
    assert kafka_age is not None and kafka_age > 0


async def _delete(url: str, queue: str) -> None:
    async with await aio_pika.connect(url) as connection:
        await (await connection.channel()).queue_delete(queue)


async def _depth_is(raw: AbstractChannel, queue: str, expected: int) -> bool:
    return await depth(raw, queue) == expected


async def test_a_services_metrics_show_the_age_of_what_it_parked(stack, database, names):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.system import running_system

    async with running_system(
        stack, database, names, payments={"dead_letter_watch_interval": 0.2}
    ) as system:

        async def gauge() -> float:
            response = await system.client.http.get(f"{system.client.urls.payments}/metrics")
            return next(
                sample.value
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if sample.name == "switchyard_dead_letter_oldest_age_seconds"
                and sample.labels == {"broker": "rabbit", "channel": QUEUE + ".dlq"}
            )

        async def nothing_parked() -> bool:  # the registry is the process's: start from 0
            return await gauge() == 0.0

        await eventually(nothing_parked, message="the gauge reading an empty dlq")
        async with await aio_pika.connect(stack.amqp_url) as connection:
            await park_in_rabbit(await connection.channel(), names, event())
        assert await eventually(gauge, message="the payments dead-letter age gauge") > 0
