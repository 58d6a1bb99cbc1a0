"""The transactional outbox against real Postgres, Kafka and RabbitMQ, including a broker outage."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import prometheus_client
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from orders.messages import OrderCreated, PaymentRequested
from shared.channels import Channel
from shared.db import AsyncpgStatement, plain_url
from shared.envelope import Envelope, decode, new_envelope
from shared.kafka import KafkaBus
from shared.outbox import (
    add_to_outbox,
    in_turn,
    notify_channel,
    outbox_table,
    owing,
    owing_values,
)
from shared.outbox_relay import OutboxRelay
from shared.rabbit import RabbitBus
from shared.retry import RetryPolicy
from tests.support.eventually import eventually
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration

TOPIC = "orders.events"
PARTITIONS = 3
ORDERS_EVENTS = Channel.kafka(TOPIC)
PAYMENT_REQUESTED = Channel.rabbit("payments.commands", "payment.requested")
PAYMENT_REQUESTS = "payments.payment-requests"


@pytest.fixture
async def outbox(engine: AsyncEngine, names: str) -> sa.Table:
    """This test's own schema with an outbox and a business table beside it."""
    schema = names.rstrip(".")
    metadata = sa.MetaData()
    table = outbox_table(metadata, schema)
    sa.Table("orders", metadata, sa.Column("id", sa.Text, primary_key=True), schema=schema)
    async with engine.begin() as conn:
        await conn.execute(sa.schema.CreateSchema(schema))
        await conn.run_sync(metadata.create_all)
    return table


@pytest.fixture
async def kafka(stack, names: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(stack.kafka_bootstrap, prefix=names)
    await bus.ensure_topics({TOPIC: PARTITIONS})
    await bus.start()
    yield bus
    await bus.stop()


def order_event(order_id: str, type: str = "order.created", **data: object) -> Envelope:
    return new_envelope(type=type, source="orders", subject=order_id, data={"id": order_id, **data})


async def place_order(
    engine: AsyncEngine, outbox: sa.Table, channel: Channel, envelope: Envelope
) -> None:
    """A business write and the message it owes, in one transaction."""
    orders = outbox.metadata.tables[f"{outbox.schema}.orders"]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(orders).values(id=envelope.id))
        await add_to_outbox(conn, outbox, channel, envelope)


async def outbox_rows(engine: AsyncEngine, outbox: sa.Table) -> list[sa.Row]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.select(outbox).order_by(outbox.c.id)))


async def all_sent(engine: AsyncEngine, outbox: sa.Table, count: int) -> bool:
    rows = await outbox_rows(engine, outbox)
    return len(rows) == count and all(row.sent_at is not None for row in rows)


SUBJECTS = ["order-1", "order-2", "order-3"]


async def owe_while_down(
    engine: AsyncEngine, outbox: sa.Table, channel: Channel, type: str
) -> defaultdict[str, list[str]]:
    """Four messages for each of SUBJECTS, in order; the message ids by subject."""
    owed: defaultdict[str, list[str]] = defaultdict(list)
    for step in range(4):
        for subject in SUBJECTS:
            event = order_event(subject, type, step=step)
            await place_order(engine, outbox, channel, event)
            owed[subject].append(event.id)
    return owed


async def each_subject_failed(engine: AsyncEngine, outbox: sa.Table, *, after: int = 0) -> bool:
    """The relay tried every subject (the rows past the first `after`) and sent none of them."""
    rows = (await outbox_rows(engine, outbox))[after:]
    assert all(row.sent_at is None for row in rows)
    return {row.key for row in rows if row.last_error} == set(SUBJECTS)


async def test_rows_of_a_rolled_back_transaction_are_never_published(
    service_database, engine, outbox, kafka, stack, names
):
    doomed, kept = order_event("order-1"), order_event("order-2")
    async with engine.connect() as conn:
        await add_to_outbox(conn, outbox, ORDERS_EVENTS, doomed)
        await conn.rollback()
    async with engine.begin() as conn:
        await add_to_outbox(conn, outbox, ORDERS_EVENTS, kept)

    relay = OutboxRelay(service_database, outbox, {"kafka": kafka})
    assert await relay.run_once() == 1

    assert [row.message_id for row in await outbox_rows(engine, outbox)] == [kept.id]
    records = await everything_on(stack.kafka_bootstrap, names + TOPIC)
    assert [decode(record.value).id for record in records] == [kept.id]


async def test_committed_rows_are_published_in_order_and_marked_sent(
    service_database, engine, outbox, kafka, stack, names
):
    events = [
        order_event("order-1"),
        order_event("order-2"),
        order_event("order-1", "order.paid"),
        order_event("order-1", "order.refunded"),
    ]
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with engine.begin() as conn:
        for event in events:
            await add_to_outbox(
                conn, outbox, ORDERS_EVENTS, event, headers={"traceparent": traceparent}
            )

    relay = OutboxRelay(service_database, outbox, {"kafka": kafka})
    assert await relay.run_once() == len(events)
    assert await relay.run_once() == 0  # nothing is published twice

    rows = await outbox_rows(engine, outbox)
    assert [(r.attempts, r.last_error, r.sent_at is not None) for r in rows] == [
        (1, None, True)
    ] * len(events)
    records = await everything_on(stack.kafka_bootstrap, names + TOPIC)
    assert len(records) == len(events)
    by_key: defaultdict[bytes, list[str]] = defaultdict(list)
    for record in records:  # sorted by partition and offset: the order the broker keeps
        envelope = decode(record.value)
        assert envelope == next(e for e in events if e.id == envelope.id)
        assert ("traceparent", traceparent.encode()) in record.headers
        by_key[record.key].append(envelope.id)
    assert by_key == {
        b"order-1": [events[0].id, events[2].id, events[3].id],
        b"order-2": [events[1].id],
    }


async def listeners(engine: AsyncEngine, outbox: sa.Table) -> int:
    """How many connections LISTEN for this outbox's NOTIFY."""
    async with engine.connect() as conn:
        statement = sa.text("SELECT count(*) FROM pg_stat_activity WHERE query = :listen")
        listen = f'LISTEN "{notify_channel(outbox)}"'
        return await conn.scalar(statement, {"listen": listen})


async def test_relay_wakes_on_notify_long_before_its_poll(service_database, engine, outbox, kafka):
    relay = OutboxRelay(service_database, outbox, {"kafka": kafka}, poll_interval=30)
    await relay.start()
    try:
        await eventually(lambda: listeners(engine, outbox), message="relay LISTENs")
        for count, order_id in enumerate(("order-1", "order-2"), start=1):
            await place_order(engine, outbox, ORDERS_EVENTS, order_event(order_id))
            await eventually(lambda c=count: all_sent(engine, outbox, c), timeout=5)
    finally:
        await relay.stop()


async def test_relay_keeps_going_through_a_database_outage(engine, outbox, kafka, database):
    url = sa.make_url(database.admin_url)
    async with TcpProxy(url.host, url.port) as proxy:
        through_proxy = url.set(host=proxy.host, port=proxy.port)
        relay = OutboxRelay(
            through_proxy.render_as_string(hide_password=False),
            outbox,
            {"kafka": kafka},
            poll_interval=0.2,
            max_backoff=0.5,
        )
        await relay.start()
        try:
            await eventually(lambda: listeners(engine, outbox), message="relay LISTENs")
            proxy.cut()
            for order_id in ("order-1", "order-2"):
                await place_order(engine, outbox, ORDERS_EVENTS, order_event(order_id))
            # The listener retries once a second; more refusals than that mean rounds failed too.
            await eventually(lambda: proxy.refused >= 6, message="relay rounds fail")
            assert await listeners(engine, outbox) == 0
            proxy.restore()
            await eventually(lambda: all_sent(engine, outbox, 2), timeout=15)
            await eventually(lambda: listeners(engine, outbox), message="relay LISTENs again")
        finally:
            await relay.stop()


async def test_outbox_survives_a_broker_outage_and_keeps_order_per_subject(
    service_database, engine, outbox, stack, names
):
    async with RabbitBus(stack.amqp_url, prefix=names) as topology:
        await topology.declare_exchange(PAYMENT_REQUESTED.name, "direct")
        await topology.declare_queue(
            PAYMENT_REQUESTS,
            exchange=PAYMENT_REQUESTED.name,
            routing_keys=[PAYMENT_REQUESTED.routing_key],
            retry=RetryPolicy((1.0,)),  # nothing consumes it here
        )
    amqp = URL(stack.amqp_url)
    async with TcpProxy(amqp.host, amqp.port) as proxy:
        # Reconnect faster than aio-pika's default 5 s, to keep the test short.
        proxied = amqp.with_host(proxy.host).with_port(proxy.port)
        proxied = str(proxied.update_query(reconnect_interval=0.5))
        async with RabbitBus(proxied, prefix=names, confirm_timeout=1) as rabbit:
            relay = OutboxRelay(service_database, outbox, {"rabbit": rabbit}, max_backoff=1)
            await relay.start()
            try:
                proxy.cut()
                expected = await owe_while_down(
                    engine, outbox, PAYMENT_REQUESTED, "payment.requested"
                )
                await eventually(lambda: each_subject_failed(engine, outbox), timeout=30)
                rows = await outbox_rows(engine, outbox)
                # Only the head of each subject is tried; the rest wait behind it, in order.
                heads = {expected[s][0] for s in SUBJECTS}
                assert {r.message_id for r in rows if r.attempts} == heads
                backlog = prometheus_client.REGISTRY.get_sample_value(
                    "switchyard_outbox_backlog", {"schema": outbox.schema}
                )
                assert backlog == len(rows)

                proxy.restore()
                await eventually(lambda: all_sent(engine, outbox, len(rows)), timeout=30)
            finally:
                await relay.stop()

    received = await drain(stack.amqp_url, names + PAYMENT_REQUESTS, count=len(rows))
    by_subject: defaultdict[str, list[str]] = defaultdict(list)
    for envelope in received:
        by_subject[envelope.subject].append(envelope.id)
    assert by_subject == expected
    async with engine.connect() as conn:
        orders = outbox.metadata.tables[f"{outbox.schema}.orders"]
        assert await conn.scalar(sa.select(sa.func.count()).select_from(orders)) == len(rows)


async def test_outbox_survives_a_kafka_crash_and_keeps_order_per_key(
    service_database, engine, outbox, stack, names, servers
):
    # A short publish timeout keeps each failed round, and so the test, short.
    kafka = KafkaBus(stack.kafka_bootstrap, prefix=names, publish_timeout=1.0)
    await kafka.ensure_topics({TOPIC: PARTITIONS})
    await kafka.start()
    relay = OutboxRelay(service_database, outbox, {"kafka": kafka}, max_backoff=1)
    await relay.start()
    try:
        first = order_event("order-0")
        await place_order(engine, outbox, ORDERS_EVENTS, first)
        await eventually(lambda: all_sent(engine, outbox, 1), message="sent before the crash")

        await asyncio.to_thread(servers.crash, "kafka")
        expected = await owe_while_down(engine, outbox, ORDERS_EVENTS, "order.paid")
        await eventually(lambda: each_subject_failed(engine, outbox, after=1), timeout=30)
        await asyncio.to_thread(servers.start, ["kafka"])
        await eventually(lambda: all_sent(engine, outbox, 13), timeout=60)
    finally:
        await relay.stop()
        await kafka.stop()

    records = await everything_on(stack.kafka_bootstrap, names + TOPIC)
    by_key: defaultdict[str, list[str]] = defaultdict(list)
    for record in records:
        by_key[record.key.decode()].append(decode(record.value).id)
    assert by_key.pop("order-0") == [first.id]  # written before the crash, kept by it
    assert by_key == expected


async def test_two_relays_publish_each_of_200_rows_exactly_once(
    service_database, engine, outbox, kafka, stack, names, database
):
    events = [order_event(f"order-{n % 20}", step=n) for n in range(200)]
    for start in range(0, len(events), 20):
        async with engine.begin() as conn:
            for event in events[start : start + 20]:
                await add_to_outbox(conn, outbox, ORDERS_EVENTS, event)

    # One relay shares the test's pool, the other builds its own from the URL, like a second
    # service instance would.
    relays = [
        OutboxRelay(source, outbox, {"kafka": kafka}, batch_size=10, poll_interval=0.2)
        for source in (service_database, database.admin_url)
    ]
    await asyncio.gather(*(relay.start() for relay in relays))
    try:
        await eventually(lambda: all_sent(engine, outbox, len(events)), timeout=60)
    finally:
        await asyncio.gather(*(relay.stop() for relay in relays))

    records = await everything_on(stack.kafka_bootstrap, names + TOPIC)
    published = Counter(decode(record.value).id for record in records)
    assert published == Counter(event.id for event in events)


async def everything_on(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record on a topic by partition and offset, bypassing the adapter under test."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(partitions)  # no committed offsets: it reads from the earliest
        ends = await reader.end_offsets(partitions)
        records: list[ConsumerRecord] = []

        async def at_the_end() -> bool:
            batch = await reader.getmany(timeout_ms=200)
            records.extend(record for rs in batch.values() for record in rs)
            return all([await reader.position(tp) >= ends[tp] for tp in partitions])

        await eventually(at_the_end, message=f"the end of {topic}")
    finally:
        await reader.stop()
    return sorted(records, key=lambda record: (record.partition, record.offset))


async def drain(amqp_url: str, queue_name: str, *, count: int) -> list[Envelope]:
    """Take `count` messages off a queue, in queue order, bypassing the adapter under test."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        received: list[Envelope] = []

        async def have_all() -> bool:
            while (message := await queue.get(fail=False)) is not None:
                await message.ack()
                received.append(decode(message.body))
            return len(received) >= count

        await eventually(have_all, message=f"{count} messages on {queue_name}")
        assert await queue.get(fail=False) is None  # and nothing more
    return received


def placing(outbox: sa.Table, count: int) -> AsyncpgStatement:
    """A business row and `count` messages in one statement, as orders places an order. The row
    is written from the outbox's rows, so they are in before a clash on the row fails it."""
    orders = outbox.metadata.tables[f"{outbox.schema}.orders"]
    owed = owing(outbox, count)
    order_id = sa.select(sa.bindparam("order_id", type_=sa.Text)).select_from(owed).limit(1)
    placed = sa.insert(orders).from_select(["id"], order_id)
    return AsyncpgStatement(sa.select(sa.literal_column("1")).add_cte(placed.cte("placed")))


async def test_a_write_and_the_messages_it_owes_go_in_one_statement(
    service_database, database, engine: AsyncEngine, outbox: sa.Table
):
    created = OrderCreated(
        order_id=uuid.uuid4(), user_id=uuid.uuid4(), total_cents=700, currency="EUR", items=[]
    )
    requested = PaymentRequested(
        order_id=created.order_id, user_id=created.user_id, amount_cents=700, currency="EUR"
    )
    owed = in_turn(created, requested, correlation_id="request-7")
    first, second = (o.envelope for o in owed)
    woken = asyncio.Queue()
    listener = await asyncpg.connect(plain_url(database.admin_url))
    try:
        channel = notify_channel(outbox)
        await listener.add_listener(channel, lambda *args: woken.put_nowait(args[3]))
        statement = placing(outbox, 2)
        async with service_database.autocommit() as conn:
            await statement.execute(conn, order_id="o-1", **owing_values(outbox, owed))
            assert await asyncio.wait_for(woken.get(), 5) == ""  # the wake-up, once committed

            # The same order again fails whole: not one of its messages is owed, and the relay
            # is not woken (the marker, sent after it, is the next notification).
            again = in_turn(created, requested, correlation_id="request-8")
            with pytest.raises(asyncpg.UniqueViolationError):
                await statement.execute(conn, order_id="o-1", **owing_values(outbox, again))
            await conn.execute("SELECT pg_notify($1, 'marker')", channel)
            assert await asyncio.wait_for(woken.get(), 5) == "marker"
            assert woken.empty()  # two rows, one wake-up: identical notifications fold into one
    finally:
        await listener.close()

    rows = await outbox_rows(engine, outbox)
    assert [(r.message_id, r.broker, r.destination, r.type) for r in rows] == [
        (first.id, "kafka", "orders.events", "order.created"),
        (second.id, "rabbit", "payments.commands", "payment.requested"),
    ]
    stored = [decode(json.dumps(r.payload).encode()) for r in rows]
    assert stored == [first, second]
    assert [(e.correlationid, e.causationid) for e in stored] == [
        ("request-7", None),
        ("request-7", first.id),
    ]
    assert [r.key for r in rows] == [str(created.order_id)] * 2  # the order's messages in order
    assert all(r.headers == rows[0].headers for r in rows)
