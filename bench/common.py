"""Shared by the benchmarks: servers to measure against, percentiles, and writing results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from switchyard.stack.endpoints import Endpoints

RESULTS = Path(__file__).parent / "results"


@contextmanager
def servers() -> Iterator[Endpoints]:
    """The servers of a running `make up` (URLs in the environment), else a private native stack."""
    from switchyard.stack.selection import test_stack

    state = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    state.chmod(0o755)
    try:
        with test_stack(state) as endpoints:
            yield endpoints
    finally:
        shutil.rmtree(state, ignore_errors=True)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {}
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
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
