"""`make bench`: orders through the whole stack, measured against the raw rates of its parts.

    python -m bench.pipeline [--orders 2000 --concurrency 64] [--rate 100 --rate-orders 1000]

Starts the three services as processes on the servers of a running `make up` (URLs in the
environment) or on a private native stack. A simulated payment provider hears of each order
created and answers with a signed `payment.succeeded` webhook; an order counts as paid when
orders sends its `order.paid` record to Kafka (the record's timestamp). The provider and the
watch for `order.paid` read one tap of `orders.events`. Nothing polls the services.

Three measures, each against its target: throughput with a fixed number of orders in flight,
latency at a fixed offered rate, and the outbox relay's commit-to-confirm latency when idle.
Then the floor (bench/floor.py): the order's parts on their own on the same servers, and the
pipeline's CPU per order as a multiple of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.common import RESULTS, percentiles, rate, save, servers
from bench.cpu import cpu_seconds
from bench.floor import floor
from bench.load import Paid, Posted, create_users, post_orders, provider, watch_paid
from bench.messaging import database_raw, kafka_raw, rabbit_raw, relay_run
from bench.targets import floor_table, judge, report
from shared.db import make_engine
from shared.logging import configure_logging
from shared.outbox import outbox_table
from switchyard.stack.bootstrap import database_of
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.fleet import Fleet
from switchyard.stack.native import NativeStack
from switchyard.stack.taps import kafka_tap

BENCH_SETTINGS = {"LOG_LEVEL": "WARNING", "OUTBOX_POLL_INTERVAL": "1.0"}


def process_roots(fleet: Fleet, endpoints) -> dict[str, int]:
    roots = {name: p.pid() for name, p in fleet.processes.items() if p.pid()}
    return roots | server_roots(endpoints)


def server_roots(endpoints) -> dict[str, int]:
    """The servers' pids, when they are native processes (else their CPU cannot be read)."""
    roots = {}
    if endpoints.state:
        # postgres, rabbitmq and kafka; in a cluster each broker node by name (kafka-1 ...)
        for name, server in NativeStack(Path(endpoints.state)).servers.items():
            if pid := server.server_pid():
                roots[name] = pid
    return roots


async def outbox_latency(database_url: str, since: float, until: float) -> dict:
    """Outbox rows of the phase, from their transaction's start (`created_at`) to broker confirm:
    the services' own transactions are inside the figure (the idle run measures from the commit)."""
    conn = await asyncpg.connect(database_url)
    try:
        samples: list[float] = []
        for schema in ("users", "orders", "payments"):
            rows = await conn.fetch(
                f"SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM {schema}.outbox "
                "WHERE sent_at IS NOT NULL AND created_at BETWEEN to_timestamp($1) AND to_timestamp($2)",
                since, until)  # fmt: skip
            samples += [float(r["ms"]) for r in rows]
        return percentiles(samples)
    finally:
        await conn.close()


@contextmanager
def profiling(fleet: Fleet, label: str | None) -> Iterator[None]:
    """py-spy on every service process for the phase: collapsed stacks in bench/results, to read
    as text or open in speedscope. Sampling does not pause the services (--nonblocking)."""
    if not label:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    RESULTS.mkdir(exist_ok=True)
    spies = [subprocess.Popen(
        [str(spy), "record", "--nonblocking", "--format", "raw", "--rate", "200", "--pid",
         str(process.pid()), "--output", str(RESULTS / f"profile-{label}-{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) for name, process in fleet.processes.items()]  # fmt: skip
    try:
        yield
    finally:
        for process in spies:
            process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        for process in spies:
            process.wait(timeout=30)


@dataclass
class Pipeline:
    """The running fleet, its users, the simulated provider, and what every phase measures."""

    fleet: Fleet
    endpoints: Endpoints
    users: list[dict]
    paid: Paid
    args: argparse.Namespace
    helpers: list[asyncio.Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roots = process_roots(self.fleet, self.endpoints)

    async def phase(self, console: Console, run: str, *, orders: int, rate_per_s: float | None,
                    concurrency: int) -> dict:  # fmt: skip
        """Post `orders`, wait until all are paid (or the timeout), and measure the phase."""
        posted = Posted()
        # The warm-up is not measured, so not profiled either.
        label = f"{self.args.profile}-{run}" if self.args.profile and run != "warmup" else None
        retries, failures = len(self.paid.webhook_retries), len(self.paid.webhook_failures)
        outcomes = self.paid.webhook_outcomes.copy()
        with profiling(self.fleet, label):
            results = await self._phase(console, posted, orders, rate_per_s, concurrency)
        results["webhook_outcomes"] = dict(self.paid.webhook_outcomes - outcomes)
        results["webhook_retries"] = len(self.paid.webhook_retries) - retries
        results["webhook_retries_sample"] = self.paid.webhook_retries[retries:][:3]
        results["webhook_failures"] = len(self.paid.webhook_failures) - failures
        return results

    async def _phase(self, console: Console, posted: Posted, orders: int,
                     rate_per_s: float | None, concurrency: int) -> dict:  # fmt: skip
        cpu_before, own_before = cpu_seconds(self.roots), os.times()
        kernel_before = cpu_seconds(self.roots, kernel_only=True)
        wall_started = time.time()
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:  # fmt: skip
            label = f"{rate_per_s:g}/s offered" if rate_per_s else f"{concurrency} in flight"
            posting = bar.add_task(f"posted ({label})", total=orders)
            paying = bar.add_task("paid", total=orders)
            driver = asyncio.create_task(post_orders(
                self.fleet, posted, self.paid, orders, self.users, rate_per_s=rate_per_s,
                concurrency=concurrency, progress=lambda: bar.advance(posting)))  # fmt: skip
            deadline = time.monotonic() + self.args.timeout
            while (time.monotonic() < deadline and not self._ended_helper()
                   and (not driver.done() or self._unpaid(posted))):  # fmt: skip
                bar.update(paying, completed=len(posted.at) - self._unpaid(posted))
                await asyncio.sleep(0.1)
            bar.update(paying, completed=len(posted.at) - self._unpaid(posted))
            driver.cancel()  # past the deadline, orders still waiting to be paid stop waiting
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        if helper := self._ended_helper():  # no order would be paid from now on
            raise RuntimeError(f"{helper.get_name()} stopped") from helper.exception()
        cpu_after, own_after = cpu_seconds(self.roots), os.times()
        kernel_after = cpu_seconds(self.roots, kernel_only=True)
        paid = [o for o in posted.at if o in self.paid.at]
        first, last = min(posted.at.values()), max(self.paid.at[o] for o in paid)
        cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0), 2) for name in cpu_after}
        kernel = {n: round(kernel_after[n] - kernel_before.get(n, 0), 2) for n in kernel_after}
        url = self.endpoints.database_url
        return {
            "orders": orders, "offered_rate_per_s": rate_per_s, "concurrency": concurrency,
            "paid": len(paid), "failures": len(posted.failures),
            "failures_sample": posted.failures[:3],
            "orders_per_s": rate(len(paid), last - first),
            "post_to_paid_ms": percentiles([(self.paid.at[o] - posted.at[o]) * 1000 for o in paid]),
            "outbox_write_to_confirm_ms": await outbox_latency(url, wall_started, time.time()),
            "cpu_seconds": cpu,
            "cpu_seconds_per_order": round(sum(cpu.values()) / max(len(paid), 1), 4),
            # Of that, in the kernel: the cost of round trips between processes, not of Python.
            "kernel_cpu_seconds": kernel,
            # The load generator shares the cores; shown, not counted in the per-order figure.
            "load_generator_cpu_seconds": round(sum(own_after[:2]) - sum(own_before[:2]), 2),
        }  # fmt: skip

    def _ended_helper(self) -> asyncio.Task | None:
        """The provider or the watch for `order.paid`, if it ended: both run for every phase."""
        return next((task for task in self.helpers if task.done()), None)

    def _unpaid(self, posted: Posted) -> int:
        return sum(1 for o in posted.at if o not in self.paid.at)


async def measure(args, fleet: Fleet, endpoints, console: Console) -> dict:
    paid = Paid()
    pipeline = Pipeline(fleet, endpoints, await create_users(fleet, args.users), paid, args)
    p = fleet.prefix
    async with kafka_tap(endpoints.kafka_bootstrap, f"{p}orders.events") as orders_events:
        pipeline.helpers = [
            asyncio.create_task(provider(fleet, orders_events, paid), name="the provider"),
            asyncio.create_task(watch_paid(orders_events, paid), name="the watch for order.paid"),
        ]
        try:
            results = {}
            if args.warmup:
                # Fresh servers spend their first seconds under load compiling (the Kafka JVM's
                # JIT) and filling caches and pools: a cost of starting, not of an order.
                results["warmup"] = await pipeline.phase(
                    console, "warmup", orders=args.warmup, rate_per_s=None,
                    concurrency=args.concurrency)  # fmt: skip
            results["throughput"] = await pipeline.phase(
                console, "throughput", orders=args.orders, rate_per_s=None,
                concurrency=args.concurrency)  # fmt: skip
            if args.rate:
                results["latency"] = await pipeline.phase(
                    console, "latency", orders=args.rate_orders, rate_per_s=args.rate,
                    concurrency=1024)  # fmt: skip
        finally:
            for task in pipeline.helpers:
                task.cancel()
    measured = [results[run] for run in ("throughput", "latency") if run in results]
    results["webhook_retries"] = sum(run["webhook_retries"] for run in measured)
    results["webhook_retries_sample"] = [
        s for run in measured for s in run["webhook_retries_sample"]
    ][:3]
    results["webhook_failures"] = sum(run["webhook_failures"] for run in measured)
    return results


async def parts(endpoints, n: int) -> dict:
    """The parts on their own, on the same servers, right after the pipeline: raw rates, and the
    outbox relay with one row at a time (idle)."""
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench")
    await admin.close()
    table = outbox_table(sa.MetaData(), "bench")
    engine = make_engine(endpoints.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    await engine.dispose()
    # Idle first: the raw runs leave the servers busy for a while (autovacuum, log flushes).
    idle = await relay_run(endpoints, table, 300, spaced_ms=20)
    return {
        "raw": {
            "rabbitmq": await rabbit_raw(endpoints.amqp_url, n),
            "kafka": await kafka_raw(endpoints.kafka_bootstrap, endpoints.kafka_replication, n),
            "postgres": await database_raw(endpoints.database_url, table, n),
        },
        "outbox_idle": idle,
    }


async def main(args) -> dict:
    console = Console()
    with servers() as endpoints:
        state = Path(tempfile.mkdtemp(prefix="switchyard-bench-fleet-"))
        database = database_of(endpoints.database_url)  # the benchmark's own: bench.common
        fleet = Fleet(state, endpoints, database, f"bench{uuid.uuid4().hex[:6]}.",
                      instances=args.instances, settings=BENCH_SETTINGS)  # fmt: skip
        try:
            await asyncio.to_thread(fleet.start)
            results = await measure(args, fleet, endpoints, console)
        finally:
            fleet.stop()
            shutil.rmtree(state, ignore_errors=True)
        results |= await parts(endpoints, args.raw)
        results["floor"] = await floor(endpoints, server_roots(endpoints),
                                       orders=args.floor_orders, concurrency=args.concurrency)  # fmt: skip
    results |= {"backend": endpoints.backend, "instances": args.instances}
    return judge(results)


async def floor_only(args) -> dict:
    with servers() as endpoints:
        return {"floor": await floor(endpoints, server_roots(endpoints),
                                     orders=args.floor_orders, concurrency=args.concurrency)}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders in the throughput run")
    parser.add_argument("--concurrency", type=int, default=64, help="orders in flight there")
    parser.add_argument("--warmup", type=int, default=1000, help="orders posted first, not "
                        "measured (0: none)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=100, help="offered orders/s in the latency "
                        "run (0: no latency run)")  # fmt: skip
    parser.add_argument("--rate-orders", type=int, default=1000, help="orders in the latency run")
    parser.add_argument("--instances", type=int, default=1, help="processes per service")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--raw", type=int, default=3000, help="messages for each raw-rate measure")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run at most")
    parser.add_argument("--profile", metavar="LABEL", help="record py-spy profiles of every "
                        "service in each run: bench/results/profile-LABEL-<run>-<service>.txt")  # fmt: skip
    parser.add_argument("--floor-orders", type=int, default=1000, help="order-equivalents for "
                        "the floor: the order's parts on their own")  # fmt: skip
    parser.add_argument("--floor-only", action="store_true", help="measure only the floor")
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    if args.floor_only:
        results = asyncio.run(floor_only(args))
        Console().print(floor_table(results["floor"]))
        print(f"results: {save('floor', results)}")
    else:
        results = asyncio.run(main(args))
        report(results)
        print(f"results: {save('pipeline', results)}")
