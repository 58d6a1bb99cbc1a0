"""Load script: requests per second for `POST /api/v1/users` against a running users service.

    python -m bench.users_post --url http://127.0.0.1:8001 [--seconds 10] [--concurrency 32]

Without --url it starts what it measures: the servers (those of a running `make up` when their
URLs are in the environment, else a private native stack) and one users process under uvicorn,
and stops both afterwards. Every request registers a new user, so each is a real insert, an
outbox row and a Kafka publish by the relay. Prints a table and writes bench/results/users-post-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import percentiles, rate, save, servers
from switchyard.stack.bootstrap import service_url
from switchyard.stack.processes import free_port


async def load(url: str, seconds: float, concurrency: int) -> dict:
    """`concurrency` clients POST new users back to back for `seconds`; count and time each."""
    statuses: Counter[int] = Counter()
    latencies_ms: list[float] = []
    run = uuid.uuid4().hex[:8]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def client(n: int, until: float, record: bool) -> None:
            i = 0
            while time.perf_counter() < until:
                i += 1
                body = {"email": f"{run}-{n}-{i}-{record}@bench.example.com", "name": "Bench"}
                started = time.perf_counter()
                response = await http.post("/api/v1/users", json=body)
                if record:
                    statuses[response.status_code] += 1
                    latencies_ms.append((time.perf_counter() - started) * 1000)

        async def phase(duration: float, record: bool) -> float:
            started = time.perf_counter()
            until = started + duration
            await asyncio.gather(*(client(n, until, record) for n in range(concurrency)))
            return time.perf_counter() - started

        await phase(min(2.0, seconds / 5), record=False)  # warm up the pool and connections
        elapsed = await phase(seconds, record=True)
    return {
        "requests_per_s": rate(statuses[201], elapsed),
        "statuses": dict(statuses),
        "latency_ms": percentiles(latencies_ms),
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
    }


@contextmanager
def users_service() -> Iterator[str]:
    """A users process (uvicorn, one worker) on a free port, against the chosen servers."""
    with servers() as endpoints:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": service_url(endpoints.database_url, "users"),
            "AMQP_URL": endpoints.amqp_url,
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
            "BROKER_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "uvicorn", "users.app:app", "--port", str(port),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        process = subprocess.Popen(command, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)  # graceful: the relay finishes its batch
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the users service exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the users service was not ready within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running users service")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    if args.url:
        results = asyncio.run(load(args.url, args.seconds, args.concurrency))
    else:
        with users_service() as url:
            results = asyncio.run(load(url, args.seconds, args.concurrency))

    table = Table(title="POST /api/v1/users")
    table.add_column("requests/s (201)", justify="right")
    for name in ("p50", "p95", "p99", "max"):
        table.add_column(f"{name} ms", justify="right")
    table.add_column("statuses")
    latency = results["latency_ms"]
    table.add_row(
        str(results["requests_per_s"]),
        *(str(latency.get(name, "-")) for name in ("p50", "p95", "p99", "max")),
        ", ".join(f"{code}: {n}" for code, n in sorted(results["statuses"].items())),
    )
    Console().print(table)
    print(f"written to {save('users-post', {'users_post': results})}")


if __name__ == "__main__":
    main()
