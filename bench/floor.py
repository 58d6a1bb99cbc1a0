"""The floor: what an order's parts cost on their own, on the same servers, with none of our code.

An order is three HTTP requests, its database work (three transactions, four statements that
each commit on their own, and the outbox relays' rounds), two confirmed RabbitMQ messages and
two acknowledged Kafka records. Each part is run here for
`orders` order-equivalents, `concurrency` at a time like the pipeline, and its CPU is read from
every process it involves: this process (the client) and the server doing the work. The
pipeline's CPU per order divided by the floor's says how much our layers add, a figure that
means the same on any machine.

    python -m bench.pipeline --floor-only [--floor-orders 1000]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from bench.cpu import cpu_seconds
from bench.load import KEEPALIVE_SECONDS
from shared.rabbit.topology import work_queue_arguments
from switchyard.stack.bootstrap import REPO
from switchyard.stack.daemon import Daemon

BODY = json.dumps({"data": "x" * 420})  # about one envelope (an order.created is ~490 bytes)
JSON = {"Content-Type": "application/json"}
WAIT_S = 120  # for the consumers to see every message; a floor run takes seconds

# The bare route: FastAPI on uvicorn started as the services are (uvloop and httptools, no
# access log), with no middleware and no database.
app = FastAPI()


@app.post("/floor")
async def echo(body: dict[str, Any]) -> dict[str, Any]:
    return body


@app.get("/floor")
async def read() -> dict[str, str]:
    return {"id": str(uuid.UUID(int=0)), "name": "Floor"}


def per_order(used: dict[str, float], orders: int, client_share: float = 1.0) -> dict:
    """CPU ms per order by process, and the part's counted total (the client's `client_share`)."""
    by_process = {name: round(s * 1000 / orders, 3) for name, s in used.items()}
    counted = sum(ms * (client_share if name == "client" else 1) for name, ms in by_process.items())
    return {"cpu_ms_per_order": by_process, "ms_per_order": round(counted, 3)}


@contextmanager
def metered(roots: dict[str, int]) -> Iterator[dict[str, float]]:
    """CPU seconds of this process ("client") and of each server in `roots`, over the block."""
    used: dict[str, float] = {}
    before, own = cpu_seconds(roots), os.times()
    yield used
    after, own_after = cpu_seconds(roots), os.times()
    used["client"] = sum(own_after[:2]) - sum(own[:2])
    used |= {name: after[name] - before[name] for name in roots}


async def each(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def gated(i: int) -> None:
        async with gate:
            await one(i)

    await asyncio.gather(*(gated(i) for i in range(count)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


async def http(orders: int, concurrency: int) -> dict:
    """The customer's POST /orders, orders' GET of the user, the provider's POST webhook: the
    same client (aiohttp, as the load generator and the users client) against the bare route."""
    port, state = _free_port(), Path(tempfile.mkdtemp(prefix="switchyard-floor-"))
    url = f"http://127.0.0.1:{port}/floor"
    server = Daemon("floor-http", state / "uvicorn.pid", state / "uvicorn.log")
    cmd = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log"]  # fmt: skip
    await asyncio.to_thread(server.start, cmd, port, lambda: _answers(url), timeout=60, cwd=REPO)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=KEEPALIVE_SECONDS)
    try:
        async with aiohttp.ClientSession(connector=connector) as client:

            async def order(_: int) -> None:
                for call in (
                    client.post(url, data=BODY, headers=JSON),
                    client.get(url),
                    client.post(url, data=BODY, headers=JSON),
                ):
                    async with call as response:
                        response.raise_for_status()
                        await response.read()

            with metered({"uvicorn": server.pid()}) as used:
                await each(orders, concurrency, order)
    finally:
        server.stop(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    # The pipeline's figure leaves out the load generator, which is the client of the
    # customer's POST and of the provider's webhook: only orders' GET of the user is counted.
    return per_order(used, orders, client_share=1 / 3)


# The database part. The services' own tables are copied into scratch schemas, and each
# step below repeats, in plain SQL on asyncpg, the statements of one step of an order
# (services/*/db.py and handlers.py, shared/inbox.py, shared/outbox.py): the same round trips.
ORDERS, PAYMENTS, USERS = "floor_orders", "floor_payments", "floor_users"
RELAY_BATCH = 100  # the relay's default batch
SQL = {
    "fetch_user": f"SELECT * FROM {USERS}.users WHERE id = $1",
    "find_key": f"SELECT * FROM {ORDERS}.idempotency_keys WHERE key = $1",
    # The order, its history line, its idempotency key, order.created and payment.requested,
    # and the relay's wake-up: one statement, no transaction (services/orders/db.py,
    # `insert_order`).
    "insert_order": f"WITH changed AS (INSERT INTO {ORDERS}.orders (id, user_id, status, "
    "total_cents, currency, items) VALUES ($1, $2, 'pending_payment', $3, 'EUR', $4::jsonb) "
    f"RETURNING *), line AS (INSERT INTO {ORDERS}.order_history (order_id, to_status, event, "
    "outcome) SELECT id, status, 'placed', 'applied' FROM changed), remembered AS (INSERT INTO "
    f"{ORDERS}.idempotency_keys (key, request_hash, order_id) SELECT $5, $5, id FROM changed), "
    f"owed AS (INSERT INTO {ORDERS}.outbox (message_id, broker, destination, routing_key, key, "
    "type, payload) VALUES ($6, 'kafka', 'orders.events', NULL, $7, 'order.created', $4::jsonb), "
    "($8, 'rabbit', 'payments.commands', 'payment.requested', $7, 'payment.requested', "
    f"$4::jsonb) RETURNING pg_notify('outbox:{ORDERS}', '')) SELECT * FROM changed",
    "lock_order": "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
    # The payment, and whether webhooks wait for it (services/payments/db.py, `insert_payment`;
    # none do here, so the floor reads none either).
    "insert_payment": f"INSERT INTO {PAYMENTS}.payments (id, order_id, user_id, amount_cents, "
    "currency, status, correlation_id) VALUES ($1, $2, $3, $4, 'EUR', 'awaiting_confirmation', "
    f"$5) ON CONFLICT (order_id) DO NOTHING RETURNING *, EXISTS (SELECT * FROM {PAYMENTS}.webhooks "
    "WHERE order_id = $2 AND state = 'pending') AS webhooks_waiting",
    "payment_for_order": f"SELECT * FROM {PAYMENTS}.payments WHERE order_id = $1",
    "record_settled_webhook": f"INSERT INTO {PAYMENTS}.webhooks (webhook_id, type, order_id, "
    "body, state, processed_at) VALUES ($1, 'payment.succeeded', $2, $3, 'applied', now()) "
    "ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id",
    # The payment updated, with payment.succeeded and the relay's wake-up (services/payments/
    # db.py, `update_payment`).
    "update_payment": f"WITH changed AS (UPDATE {PAYMENTS}.payments SET status = 'succeeded', "
    "provider_payment_id = $2, updated_at = now() WHERE id = $1 RETURNING *), owed AS (INSERT "
    f"INTO {PAYMENTS}.outbox (message_id, broker, destination, routing_key, key, type, payload) "
    "VALUES ($3, 'rabbit', 'payments.events', 'payment.succeeded', $2, 'payment.succeeded', "
    f"$4::jsonb) RETURNING pg_notify('outbox:{PAYMENTS}', '')) SELECT * FROM changed",
    "order_for_update": f"SELECT * FROM {ORDERS}.orders WHERE id = $1 FOR UPDATE",
    # The order updated, with its history line, order.paid and the relay's wake-up
    # (services/orders/db.py, `update_order`).
    "update_order": f"WITH changed AS (UPDATE {ORDERS}.orders SET status = 'paid', "
    "payment_id = $2, updated_at = now() WHERE id = $1 RETURNING *), line AS (INSERT INTO "
    f"{ORDERS}.order_history (order_id, to_status, event, message_id, from_status, outcome) "
    "SELECT id, status, 'payment.succeeded', $2, 'pending_payment', 'applied' FROM changed), "
    f"owed AS (INSERT INTO {ORDERS}.outbox (message_id, broker, destination, routing_key, key, "
    "type, payload) VALUES ($3, 'kafka', 'orders.events', NULL, $2, 'order.paid', $4::jsonb) "
    f"RETURNING pg_notify('outbox:{ORDERS}', '')) SELECT * FROM changed",
    # The inbox row and the stats in one statement (services/users/db.py, `count_once`).
    "count_once": f"WITH first_time AS (INSERT INTO {USERS}.inbox (consumer, message_id, type) "
    "VALUES ('users', $3, 'order.paid') ON CONFLICT (consumer, message_id) DO NOTHING "
    f"RETURNING message_id), counted AS (UPDATE {USERS}.users SET orders_paid = orders_paid + 1, "
    "lifetime_spent_cents = lifetime_spent_cents + $2, updated_at = now() WHERE id = $1 AND "
    "EXISTS (SELECT FROM first_time) RETURNING id) SELECT EXISTS (SELECT FROM first_time), "
    "EXISTS (SELECT FROM counted)",
}
# Per schema: shared/inbox.py's record, and the relay's claim and mark (shared/outbox_relay.py).
INBOX = ("INSERT INTO {s}.inbox (consumer, message_id, type) VALUES ($1, $2, $3) "
         "ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id")  # fmt: skip
CLAIM = ("SELECT * FROM {s}.outbox WHERE sent_at IS NULL AND broker = ANY($1::text[]) "
         "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED")  # fmt: skip
MARK_SENT = ("UPDATE {s}.outbox SET sent_at = clock_timestamp(), attempts = attempts + 1 "
             "WHERE id = ANY($1::bigint[])")  # fmt: skip


async def scratch_tables(url: str) -> None:
    """Empty copies of the services' tables, indexes and constraints, in floor_* schemas."""
    from orders import db as orders
    from payments import db as payments
    from users import db as users

    metadata = sa.MetaData()
    copied = {ORDERS: orders.metadata, PAYMENTS: payments.metadata, USERS: users.metadata}
    for schema, service in copied.items():
        for table in service.tables.values():
            table.to_metadata(metadata, schema=schema)
    dialect = postgresql.dialect()
    conn = await asyncpg.connect(url)
    try:
        for schema in (ORDERS, PAYMENTS, USERS):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        for table in metadata.sorted_tables:
            await conn.execute(str(CreateTable(table).compile(dialect=dialect)))
            for index in table.indexes:
                await conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
    finally:
        await conn.close()


async def _one_order(pool: asyncpg.Pool, user_id: uuid.UUID) -> None:
    order_id, key, total = uuid.uuid4(), str(uuid.uuid4()), 1497
    oid = str(order_id)

    async def inbox(conn, schema: str, consumer: str, kind: str) -> None:
        await conn.fetchval(INBOX.format(s=schema), consumer, str(uuid.uuid4()), kind)

    async with pool.acquire() as conn:
        # orders asks users whether the user exists: one read, no transaction
        await conn.fetchrow(SQL["fetch_user"], user_id)
        # orders places the order: the idempotency key looked up, then the order with all that
        # goes with it in one statement (neither in a transaction)
        await conn.fetchrow(SQL["find_key"], key)
        await conn.fetchrow(SQL["insert_order"], order_id, user_id, total, BODY, key,
                            str(uuid.uuid4()), oid, str(uuid.uuid4()))  # fmt: skip
        # payments takes payment.requested: inbox, lock, the payment (saying no webhook waits)
        async with conn.transaction():
            await inbox(conn, PAYMENTS, "payments", "payment.requested")
            await conn.fetchval(SQL["lock_order"], oid)
            await conn.fetchrow(SQL["insert_payment"], uuid.uuid4(), order_id, user_id, total, oid)
        # payments takes the provider's webhook: lock, the payment, the webhook stored settled,
        # the payment updated with payment.succeeded
        async with conn.transaction():
            await conn.fetchval(SQL["lock_order"], oid)
            payment = await conn.fetchrow(SQL["payment_for_order"], order_id)
            await conn.fetchval(SQL["record_settled_webhook"], str(uuid.uuid4()), order_id, BODY)
            await conn.fetchrow(SQL["update_payment"], payment["id"], oid, str(uuid.uuid4()), BODY)
        # orders takes payment.succeeded: inbox, the order locked, updated with its history
        # line and order.paid
        async with conn.transaction():
            await inbox(conn, ORDERS, "orders", "payment.succeeded")
            await conn.fetchrow(SQL["order_for_update"], order_id)
            await conn.fetchrow(SQL["update_order"], order_id, oid, str(uuid.uuid4()), BODY)
        # users takes order.paid: its inbox row and the stats in one statement, no transaction
        await conn.fetchrow(SQL["count_once"], user_id, total, str(uuid.uuid4()))


async def _relay(pool: asyncpg.Pool, url: str, schema: str, done: asyncio.Event) -> None:
    """An outbox relay's rounds (claim, mark sent) woken by NOTIFY; the publishing itself is
    the brokers' part."""
    wake = asyncio.Event()
    listener = await asyncpg.connect(url)
    await listener.add_listener(f"outbox:{schema}", lambda *_: wake.set())
    try:
        while True:
            wake.clear()
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(CLAIM.format(s=schema), ["kafka", "rabbit"], RELAY_BATCH)
                if rows:
                    await conn.execute(MARK_SENT.format(s=schema), [r["id"] for r in rows])
            if not rows and done.is_set():
                return
            if len(rows) < RELAY_BATCH:  # a short poll: the run ends soon after its last row
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 0.2)
    finally:
        await listener.close()


async def postgres(url: str, roots: dict[str, int], orders: int, concurrency: int) -> dict:
    """The order's transactions and lone statements, and the two relays (orders', payments'), on
    a pool as large as the three services' pools together."""
    await scratch_tables(url)
    pool = await asyncpg.create_pool(url, min_size=30, max_size=30)
    try:
        user_ids = [uuid.uuid4() for _ in range(50)]
        await pool.executemany(f"INSERT INTO {USERS}.users (id, email, name) VALUES ($1, $2, 'Floor')",
                               [(u, f"{u}@example.com") for u in user_ids])  # fmt: skip
        done = asyncio.Event()
        with metered(roots) as used:
            relays = [asyncio.create_task(_relay(pool, url, s, done)) for s in (ORDERS, PAYMENTS)]
            await each(orders, concurrency, lambda i: _one_order(pool, user_ids[i % 50]))
            done.set()
            await asyncio.wait_for(asyncio.gather(*relays), WAIT_S)
    finally:
        await pool.execute(f"DROP SCHEMA {ORDERS}, {PAYMENTS}, {USERS} CASCADE")
        await pool.close()
    return per_order(used, orders)


async def rabbitmq(url: str, roots: dict[str, int], orders: int, concurrency: int) -> dict:
    """payment.requested and payment.succeeded: each published persistent and mandatory, its
    confirm awaited (as the relay does), into a quorum work queue with the services' arguments,
    consumed with the services' prefetch and acked one by one."""
    name = f"floor.{uuid.uuid4().hex[:6]}"
    expected, acked = 2 * orders, asyncio.Event()
    seen = 0

    async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen == expected:
            acked.set()

    async with await aio_pika.connect(url) as publisher, await aio_pika.connect(url) as consumer:
        channel = await publisher.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, "direct", auto_delete=True)
        queue = await channel.declare_queue(name, durable=True,
                                            arguments=work_queue_arguments(name, 5))  # fmt: skip
        await queue.bind(exchange, name)
        receiving = await consumer.channel()
        await receiving.set_qos(prefetch_count=50)  # the services' prefetch
        consuming = await receiving.get_queue(name)
        tag = await consuming.consume(take)

        async def order(_: int) -> None:
            for kind in ("payment.requested", "payment.succeeded"):
                message = aio_pika.Message(BODY.encode(), type=kind, message_id=str(uuid.uuid4()),
                                           delivery_mode=aio_pika.DeliveryMode.PERSISTENT)  # fmt: skip
                await exchange.publish(message, name, mandatory=True)

        try:
            with metered(roots) as used:
                await each(orders, concurrency, order)
                await asyncio.wait_for(acked.wait(), WAIT_S)
        finally:
            await consuming.cancel(tag)
            await queue.delete(if_unused=False, if_empty=False)
    return per_order(used, orders)


async def kafka(bootstrap: str, replication: tuple[int, int], roots: dict[str, int],
                orders: int, concurrency: int) -> dict:  # fmt: skip
    """order.created and order.paid: each sent acks=all by an idempotent producer and awaited (as
    the relay does), on a topic of three partitions like orders.events, read by a consumer group
    that commits after each fetched batch (as the services' consumers do)."""
    topic, (replicas, insync) = f"floor.{uuid.uuid4().hex[:6]}", replication
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, replicas,
                                        topic_configs={"min.insync.replicas": str(insync)})])  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic,
                                enable_auto_commit=False, auto_offset_reset="earliest")  # fmt: skip
    await producer.start()
    await consumer.start()

    async def drain() -> None:
        seen = 0
        while seen < 2 * orders:
            batch = await consumer.getmany(timeout_ms=1000, max_records=100)
            for partition, records in batch.items():
                seen += len(records)
                await consumer.commit({partition: records[-1].offset + 1})

    async def order(i: int) -> None:
        for _ in ("order.created", "order.paid"):
            await producer.send_and_wait(topic, BODY.encode(), key=str(i).encode())

    try:
        async with asyncio.timeout(60):  # the group's first join waits out its rebalance delay
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
        with metered(roots) as used:
            draining = asyncio.create_task(drain())
            await each(orders, concurrency, order)
            await asyncio.wait_for(draining, WAIT_S)
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return per_order(used, orders)


async def floor(endpoints, servers: dict[str, int], *, orders: int, concurrency: int) -> dict:
    """Each part on its own, then the floor: the sum of what each part's processes spent."""
    only = lambda kind: {n: pid for n, pid in servers.items() if n.split("-")[0] == kind}  # noqa: E731
    kafka_at = (endpoints.kafka_bootstrap, endpoints.kafka_replication)
    parts = {
        "http": await http(orders, concurrency),
        "postgres": await postgres(endpoints.database_url, only("postgres"), orders, concurrency),
        "rabbitmq": await rabbitmq(endpoints.amqp_url, only("rabbitmq"), orders, concurrency),
        "kafka": await kafka(*kafka_at, only("kafka"), orders, concurrency),
    }
    total = round(sum(part["ms_per_order"] for part in parts.values()), 3)
    # Without a server's pid (a stack this process did not start) its CPU cannot be read.
    missing = sorted({"postgres", "rabbitmq", "kafka"} - {n.split("-")[0] for n in servers})
    return {"orders": orders, "concurrency": concurrency, "parts": parts,
            "ms_per_order": total, "servers_not_counted": missing}  # fmt: skip
