"""`make bench`: orders through the whole stack, measured against the raw rates of its parts.

    python -m bench.pipeline [--orders 2000] [--rate 100 | --concurrency 64]

Starts the three services as processes on the servers of a running `make up` (URLs in the
environment) or on a private native stack. A simulated payment provider hears each
`payment.requested` and answers with a signed `payment.succeeded` webhook; an order counts as
paid when its `order.paid` record reaches Kafka. Nothing polls the services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bench.common import percentiles, rate, save, servers
from bench.cpu import cpu_seconds
from bench.messaging import database_raw, kafka_raw, rabbit_raw
from shared.db import make_engine
from shared.logging import configure_logging
from shared.outbox import outbox_table
from switchyard.stack.fleet import Fleet
from switchyard.stack.native import NativeStack
from switchyard.stack.taps import kafka_tap, rabbit_tap
from switchyard.webhook_sender import build_event, signed_request, signing_secret

BENCH_SETTINGS = {"LOG_LEVEL": "WARNING", "KAFKA_FAST_JOIN": "true", "OUTBOX_POLL_INTERVAL": "1.0"}


class Run:
    """Timestamps of one run: when each order was posted and when its order.paid arrived."""

    def __init__(self) -> None:
        self.posted: dict[str, float] = {}
        self.paid: dict[str, float] = {}
        self.failures: list[str] = []


async def provider(fleet: Fleet, http: aiohttp.ClientSession, commands, run: Run) -> None:
    """The simulated PSP: every payment request is confirmed with a signed webhook."""
    secret, url = signing_secret(), f"{fleet.urls.payments}/webhooks/psp"
    pending: set[asyncio.Task] = set()

    async def confirm(data: dict) -> None:
        event = build_event(
            "payment.succeeded", data["order_id"], data["amount_cents"], data["currency"]
        )
        body, headers = signed_request(secret, event)
        headers["content-type"] = "application/json"
        try:
            async with http.post(url, data=body, headers=headers) as response:
                if response.status >= 300:
                    run.failures.append(f"webhook {response.status} {await response.text()}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            run.failures.append(f"webhook {exc!r}")

    answered = 0
    while True:
        for command in commands.seen[answered:]:
            answered += 1
            task = asyncio.create_task(confirm(command.data))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(0.002)


async def drive(fleet: Fleet, run: Run, orders: int, users: list[dict], *, rate_per_s: float | None,
                concurrency: int, progress) -> None:  # fmt: skip
    """POST orders at a fixed offered rate (open loop) or with a fixed number in flight."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = {"user_id": users[i % len(users)]["id"], "currency": "EUR",
                    "items": [{"sku": f"SKU-{i % 97}", "quantity": 1 + i % 3, "unit_price_cents": 499}]}  # fmt: skip
            async with gate:
                started = time.perf_counter()
                try:
                    async with http.post(f"{fleet.urls.orders}/api/v1/orders", json=body,
                                         headers={"Idempotency-Key": str(uuid.uuid4())}) as response:  # fmt: skip
                        if response.status != 201:
                            run.failures.append(
                                f"{response.status} {(await response.text())[:200]}"
                            )
                            return
                        order = await response.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    run.failures.append(f"POST {exc!r}")
                    return
            run.posted[order["id"]] = started
            progress()

        tasks = []
        started = time.perf_counter()
        for i in range(orders):
            tasks.append(asyncio.create_task(one(i)))
            if rate_per_s:  # keep to the schedule, however long creating a task took
                await asyncio.sleep(max(0.0, started + (i + 1) / rate_per_s - time.perf_counter()))
        await asyncio.gather(*tasks)


async def watch_paid(tap, run: Run) -> None:
    seen = 0
    while True:
        for event in tap.seen[seen:]:
            if event.type == "order.paid":
                run.paid.setdefault(event.subject, time.perf_counter())
        seen = len(tap.seen)
        await asyncio.sleep(0.002)


def process_roots(fleet: Fleet, endpoints) -> dict[str, int]:
    roots = {name: p.pid() for name, p in fleet.processes.items() if p.pid()}
    if endpoints.backend == "native" and endpoints.state:
        native = NativeStack(Path(endpoints.state))
        for name, server in (
            ("postgres", native.postgres),
            ("rabbitmq", native.rabbitmq),
            ("kafka", native.tansu),
        ):
            if pid := server.server_pid():
                roots[name] = pid
    return roots


async def outbox_latency(database_url: str, since: float) -> dict:
    conn = await asyncpg.connect(database_url)
    try:
        samples: list[float] = []
        for schema in ("users", "orders", "payments"):
            rows = await conn.fetch(
                f"SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM {schema}.outbox "
                "WHERE sent_at IS NOT NULL AND created_at >= to_timestamp($1)", since)  # fmt: skip
            samples += [float(r["ms"]) for r in rows]
        return percentiles(samples)
    finally:
        await conn.close()


async def main(args) -> dict:
    console = Console()
    with servers() as endpoints:
        state = Path(tempfile.mkdtemp(prefix="switchyard-bench-fleet-"))
        fleet = Fleet(state, endpoints, "switchyard", f"bench{uuid.uuid4().hex[:6]}.",
                      instances=args.instances, settings=BENCH_SETTINGS)  # fmt: skip
        try:
            await asyncio.to_thread(fleet.start)
            results = await measure(args, fleet, endpoints, console)
        finally:
            fleet.stop()
            shutil.rmtree(state, ignore_errors=True)
        results["raw"] = await raw_rates(endpoints, args.raw)
    slowest_name, slowest = min(
        (("rabbitmq confirmed publishes", results["raw"]["rabbitmq"]["confirmed_batches_of_500_per_s"]),
         ("kafka acked produces", results["raw"]["kafka"]["acked_send_then_flush_per_s"]),
         ("postgres outbox transactions", results["raw"]["postgres"]["outbox_transactions_per_s"])),
        key=lambda part: part[1],
    )  # fmt: skip
    results["slowest_part"] = {"name": slowest_name, "per_s": slowest}
    results["pipeline_fraction_of_slowest"] = round(results["orders_per_s"] / slowest, 3)
    return results


async def measure(args, fleet: Fleet, endpoints, console: Console) -> dict:
    run = Run()
    async with httpx.AsyncClient(timeout=10) as http:
        users = []
        for i in range(args.users):
            r = await http.post(f"{fleet.urls.users}/api/v1/users",
                                json={"email": f"bench.{uuid.uuid4().hex[:8]}.{i}@example.com", "name": f"Bench {i}"})  # fmt: skip
            users.append(r.json())
    p = fleet.prefix
    roots = process_roots(fleet, endpoints)
    async with (
        kafka_tap(endpoints.kafka_bootstrap, f"{p}orders.events") as orders_events,
        rabbit_tap(endpoints.amqp_url, f"{p}payments.commands", "payment.requested") as commands,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as psp_http,
    ):
        helpers = [asyncio.create_task(provider(fleet, psp_http, commands, run)),
                   asyncio.create_task(watch_paid(orders_events, run))]  # fmt: skip
        cpu_before, own_before = cpu_seconds(roots), os.times()
        wall_started = time.time()
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:  # fmt: skip
            posting = bar.add_task("orders posted", total=args.orders)
            paying = bar.add_task("orders paid", total=args.orders)
            driver = asyncio.create_task(drive(fleet, run, args.orders, users, rate_per_s=args.rate,
                                               concurrency=args.concurrency,
                                               progress=lambda: bar.advance(posting)))  # fmt: skip
            deadline = time.monotonic() + args.timeout
            while (
                not driver.done() or len(run.paid) < len(run.posted)
            ) and time.monotonic() < deadline:
                bar.update(paying, completed=len(run.paid))
                await asyncio.sleep(0.1)
            bar.update(paying, completed=len(run.paid))
            await driver
        cpu_after, own_after = cpu_seconds(roots), os.times()
        for task in helpers:
            task.cancel()
    paid = [oid for oid in run.posted if oid in run.paid]
    first, last = min(run.posted.values()), max(run.paid[o] for o in paid)
    cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0), 2) for name in cpu_after}
    return {
        "orders": args.orders, "offered_rate_per_s": args.rate, "concurrency": args.concurrency,
        "instances": args.instances, "paid": len(paid), "failures": len(run.failures),
        "failures_sample": run.failures[:3],
        "orders_per_s": rate(len(paid), last - first),
        "post_to_paid_ms": percentiles([(run.paid[o] - run.posted[o]) * 1000 for o in paid]),
        "outbox_commit_to_confirm_ms": await outbox_latency(endpoints.database_url, wall_started),
        "cpu_seconds": cpu, "cpu_seconds_per_order": round(sum(cpu.values()) / max(len(paid), 1), 4),
        # The load generator shares the machine's cores; shown, not counted in the per-order figure.
        "load_generator_cpu_seconds": round(sum(own_after[:2]) - sum(own_before[:2]), 2),
        "backend": endpoints.backend,
    }  # fmt: skip


async def raw_rates(endpoints, n: int) -> dict:
    """The parts on their own, on the same servers, right after the pipeline run."""
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench")
    await admin.close()
    table = outbox_table(sa.MetaData(), "bench")
    engine = make_engine(endpoints.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    await engine.dispose()
    return {
        "rabbitmq": await rabbit_raw(endpoints.amqp_url, n),
        "kafka": await kafka_raw(endpoints.kafka_bootstrap, n),
        "postgres": await database_raw(endpoints.database_url, table, n),
    }


def report(results: dict) -> None:
    table = Table(
        title=f"switchyard pipeline ({results['backend']}, {results['instances']} instance(s) each)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    lat, box = results["post_to_paid_ms"], results["outbox_commit_to_confirm_ms"]
    offered = (
        f"{results['offered_rate_per_s']}/s offered"
        if results["offered_rate_per_s"]
        else f"{results['concurrency']} in flight"
    )
    rows = [
        ("orders paid / posted", f"{results['paid']} / {results['orders']} ({offered})"),
        ("orders/s, POST to paid", f"{results['orders_per_s']:,.0f}"),
        ("POST to paid p50 / p95 / p99 ms", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f}"),
        ("outbox commit to confirm p50 / p99 ms", f"{box['p50']:.1f} / {box['p99']:.1f}"),
        ("CPU seconds per order (all processes)", f"{results['cpu_seconds_per_order'] * 1000:.1f} ms"),
        ("raw: RabbitMQ confirmed publishes/s", f"{results['raw']['rabbitmq']['confirmed_batches_of_500_per_s']:,.0f}"),
        ("raw: Kafka acked produces/s", f"{results['raw']['kafka']['acked_send_then_flush_per_s']:,.0f}"),
        ("raw: Postgres outbox transactions/s", f"{results['raw']['postgres']['outbox_transactions_per_s']:,.0f}"),
        (f"pipeline / slowest part ({results['slowest_part']['name']})", f"{results['pipeline_fraction_of_slowest']:.2f}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    busiest = sorted(results["cpu_seconds"].items(), key=lambda kv: -kv[1])
    Console().print("CPU seconds by process: " + ", ".join(f"{k} {v:.1f}" for k, v in busiest)
                    + f" (load generator {results['load_generator_cpu_seconds']:.1f}, not counted)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=None, help="offered orders/s (open loop)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="orders in flight (closed loop)"
    )
    parser.add_argument("--instances", type=int, default=1, help="processes per service")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--raw", type=int, default=3000, help="messages for each raw-rate measure")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    results = asyncio.run(main(args))
    report(results)
    print(f"results: {save('pipeline', results)}")
