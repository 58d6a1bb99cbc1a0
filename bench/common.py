"""Shared by the benchmarks: servers to measure against, percentiles, and writing results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path

from switchyard.stack.bootstrap import bootstrap, drop_database, with_database
from switchyard.stack.endpoints import Endpoints

RESULTS = Path(__file__).parent / "results"
_server_urls = attrgetter("database_url", "amqp_url", "kafka_bootstrap")


@contextmanager
def servers() -> Iterator[Endpoints]:
    """The servers of a running `make up` (URLs in the environment), else a private native stack;
    either way with a database of the benchmark's own (`own_database`)."""
    from switchyard.stack.selection import test_stack

    state = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    state.chmod(0o755)
    try:
        # A `make up`'s database is its services': migrating it is `make up`'s business.
        with (
            test_stack(state, bootstrap=False) as endpoints,
            own_database(with_make_up_state(endpoints)) as own,
        ):
            yield own
    finally:
        shutil.rmtree(state, ignore_errors=True)


def with_make_up_state(endpoints: Endpoints) -> Endpoints:
    """URLs that are this checkout's native `make up`: with its state directory, where the
    servers' pids are, so their CPU is counted as on a private stack."""
    from switchyard.stack.control import saved_endpoints

    up = saved_endpoints() if endpoints.backend == "external" else None
    if up and up.backend == "native" and _server_urls(up) == _server_urls(endpoints):
        return replace(endpoints, state=up.state)
    return endpoints


@contextmanager
def own_database(endpoints: Endpoints) -> Iterator[Endpoints]:
    """`endpoints` on a new database with the services' schemas, dropped afterwards.

    On a `make up`'s servers its own services are running on their database: a benchmark's
    services there would share their outbox tables, and each side's relay would publish the
    other's rows under its own names (the benchmark's orders never reach its provider).
    """
    name = f"bench_{uuid.uuid4().hex[:10]}"
    url = with_database(endpoints.database_url, name)
    try:
        bootstrap(url)  # inside: a migration that fails half-way leaves no database behind
        yield replace(endpoints, database_url=url)
    finally:
        drop_database(endpoints.database_url, name)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {}
    # quantiles() needs two samples; a run that saw one still reports it
    cuts = statistics.quantiles(samples_ms * 2 if len(samples_ms) == 1 else samples_ms, n=100,
                                method="inclusive")  # fmt: skip
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2),
            "max": round(max(samples_ms), 2), "n": len(samples_ms)}  # fmt: skip


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def save(name: str, results: dict) -> Path:
    """Write `bench/results/<name>-<timestamp>.json` with the machine it ran on."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "at": stamp}
    path.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    return path


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
