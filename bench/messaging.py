"""Benchmark of the messaging core: raw broker rates, and the outbox relay measured against them.

    python -m bench.messaging [--rows 3000]

Uses the servers of a running `make up` when their URLs are in the environment, else starts a
private native stack. Prints a table and writes bench/results/messaging-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import aio_pika
import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench.common import Stopwatch, percentiles, rate, save, servers
from shared.channels import Channel
from shared.db import Database, make_engine, quoted
from shared.envelope import new_envelope
from shared.kafka import KafkaBus
from shared.logging import configure_logging
from shared.outbox import add_to_outbox, outbox_table
from shared.outbox_relay import OutboxRelay
from shared.rabbit import RabbitBus
from shared.retry import RetryPolicy

SCHEMA = "bench"


async def rabbit_raw(amqp_url: str, n: int) -> dict:
    """Persistent publishes with confirms: awaited one at a time, then in batches of 500."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench.{uuid.uuid4().hex[:6]}", exclusive=True)
        body = b"x" * 400
        message = lambda: aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)  # noqa: E731
        with Stopwatch() as one:
            for _ in range(n):
                await channel.default_exchange.publish(message(), routing_key=queue.name)
        with Stopwatch() as batched:
            for start in range(0, n, 500):
                await asyncio.gather(*(channel.default_exchange.publish(message(), routing_key=queue.name)
                                       for _ in range(min(500, n - start))))  # fmt: skip
    return {"confirmed_one_at_a_time_per_s": rate(n, one.seconds),
            "confirmed_batches_of_500_per_s": rate(n, batched.seconds)}  # fmt: skip


async def kafka_raw(bootstrap: str, replication: tuple[int, int], n: int) -> dict:
    """acks=all produces: send_and_wait one at a time, then send() all and flush."""
    (replicas, insync), body = replication, b"x" * 400
    # Made, and served, before the first send (a producer that finds no topic logs an error), as
    # the services make theirs: with their replication, and a dead-letter twin nobody uses here.
    bus = KafkaBus(
        bootstrap, prefix="bench.", replication_factor=replicas, min_insync_replicas=insync
    )
    logical = uuid.uuid4().hex[:6]
    await bus.ensure_topics({logical: 1})
    topic = bus.name(logical)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, body, key=b"warm-up")
        with Stopwatch() as one:
            for i in range(n):
                await producer.send_and_wait(topic, body, key=str(i).encode())
        with Stopwatch() as batched:
            futures = [await producer.send(topic, body, key=str(i).encode()) for i in range(n)]
            await producer.flush()
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {"acked_one_at_a_time_per_s": rate(n, one.seconds),
            "acked_send_then_flush_per_s": rate(n, batched.seconds)}  # fmt: skip


async def database_raw(database_url: str, table: sa.Table, n: int) -> dict:
    """What Postgres itself sustains: outbox-style transactions (business row + outbox row) on raw
    asyncpg, 50 tasks over a pool of 10, so our Python layers are not part of the figure."""
    pool = await asyncpg.create_pool(database_url, min_size=10, max_size=10)
    name = f"{table.schema}.{table.name}"
    insert = (f"INSERT INTO {name} (message_id, broker, destination, key, type, payload) "
              "VALUES ($1, 'kafka', 'bench.raw', $2, 'bench.raw', $3::jsonb)")  # fmt: skip
    await pool.execute(f"CREATE TABLE IF NOT EXISTS {table.schema}.business (id uuid PRIMARY KEY)")

    async def one() -> None:
        async with pool.acquire() as conn, conn.transaction():
            row_id = uuid.uuid4()
            await conn.execute(f"INSERT INTO {table.schema}.business VALUES ($1)", row_id)
            await conn.execute(insert, str(row_id), str(row_id), '{"data": {}}')

    with Stopwatch() as clock:
        for start in range(0, n, 50):
            await asyncio.gather(*(one() for _ in range(min(50, n - start))))
    await pool.close()
    return {"outbox_transactions_per_s": rate(n, clock.seconds)}


async def relay_run(endpoints, table: sa.Table, n: int, *, spaced_ms: float | None) -> dict:
    """Commit `n` outbox rows (half RabbitMQ, half Kafka) with a relay running; time until all sent.

    Latency per row runs from the moment the writer's COMMIT returned to the relay's `sent_at`,
    stamped once the broker confirmed (one host, one clock). The row's `created_at` would add the
    writer's own transaction, which is not the relay's doing.
    """
    database = Database(endpoints.database_url, size=10)
    t = quoted(table)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    rabbit, kafka = (
        RabbitBus(endpoints.amqp_url, prefix=prefix),
        KafkaBus(endpoints.kafka_bootstrap, prefix=prefix),
    )
    await rabbit.start()
    await kafka.start()
    await rabbit.declare_exchange("bench.events", "topic")
    await rabbit.declare_queue(
        "bench.sink", exchange="bench.events", routing_keys=["#"], retry=RetryPolicy((1.0,))
    )  # nothing consumes the sink: its one retry queue stays empty
    await kafka.ensure_topics({"bench.events": 3})
    relay = OutboxRelay(database, table, {"rabbit": rabbit, "kafka": kafka}, poll_interval=1.0)
    await relay.start()
    async with database.transaction() as conn:
        await conn.execute(f"DELETE FROM {t}")
    channels = [Channel.rabbit("bench.events", "bench.happened"), Channel.kafka("bench.events")]

    committed: dict[str, float] = {}

    async def write(i: int) -> None:
        event = new_envelope(
            type="bench.happened", source="bench", subject=str(uuid.uuid4()), data={"i": i}
        )
        async with database.transaction() as tx:
            await add_to_outbox(tx, table, channels[i % 2], event)
        committed[event.id] = time.time()

    try:
        with Stopwatch() as clock:
            if spaced_ms is None:
                for start in range(0, n, 50):
                    await asyncio.gather(*(write(i) for i in range(start, min(n, start + 50))))
            else:
                for i in range(n):
                    await write(i)
                    await asyncio.sleep(spaced_ms / 1000)  # an idle system: one message at a time
            while True:
                async with database.autocommit() as conn:
                    unsent = await conn.fetchval(f"SELECT count(*) FROM {t} WHERE sent_at IS NULL")
                if unsent == 0:
                    break
                await asyncio.sleep(0.01)
        async with database.autocommit() as conn:
            rows = await conn.fetch(
                f"SELECT message_id, extract(epoch FROM sent_at)::float8 FROM {t}"
            )
            latencies = [(float(sent) - committed[id_]) * 1000 for id_, sent in rows]
    finally:
        await relay.stop()
        await rabbit.stop()
        await kafka.stop()
        await database.close()
    return {
        "rows": n,
        "rows_per_s": rate(n, clock.seconds),
        "commit_to_confirm_ms": percentiles(latencies),
    }


async def main(rows: int) -> dict:
    with servers() as endpoints:
        admin = await asyncpg.connect(endpoints.database_url)
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        await admin.close()
        table = outbox_table(sa.MetaData(), SCHEMA)
        engine = make_engine(endpoints.database_url)
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
        await engine.dispose()
        results = {
            "rabbitmq": await rabbit_raw(endpoints.amqp_url, rows),
            "kafka": await kafka_raw(endpoints.kafka_bootstrap, endpoints.kafka_replication, rows),
            "postgres": await database_raw(endpoints.database_url, table, rows),
            "relay_under_load": await relay_run(endpoints, table, rows, spaced_ms=None),
            "relay_idle": await relay_run(endpoints, table, 200, spaced_ms=20),
            "backend": endpoints.backend,
        }
    slowest = min(results["rabbitmq"]["confirmed_batches_of_500_per_s"],
                  results["kafka"]["acked_send_then_flush_per_s"],
                  results["postgres"]["outbox_transactions_per_s"])  # fmt: skip
    results["relay_fraction_of_slowest_part"] = round(
        results["relay_under_load"]["rows_per_s"] / slowest, 3
    )
    return results


def report(results: dict) -> None:
    table = Table(title="messaging core")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for part in ("rabbitmq", "kafka", "postgres"):
        for key, value in results[part].items():
            table.add_row(f"{part}: {key}", f"{value:,.0f}")
    for run in ("relay_under_load", "relay_idle"):
        r = results[run]
        table.add_row(f"{run}: rows/s ({r['rows']} rows)", f"{r['rows_per_s']:,.0f}")
        lat = r["commit_to_confirm_ms"]
        table.add_row(
            f"{run}: commit->confirm p50 / p99 ms", f"{lat['p50']:.1f} / {lat['p99']:.1f}"
        )
    table.add_row("relay / slowest raw part", f"{results['relay_fraction_of_slowest_part']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    configure_logging("console", "WARNING")  # per-message debug lines would be the bottleneck
    results = asyncio.run(main(args.rows))
    report(results)
    print(f"results: {save('messaging', results)}")
