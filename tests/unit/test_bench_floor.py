"""The floor's arithmetic: CPU per order of a part, and the pipeline judged against the sum."""

from __future__ import annotations

import asyncio

import pytest

from bench.floor import each, per_order
from bench.targets import judge

pytestmark = pytest.mark.unit


def test_a_part_costs_what_its_processes_spent_per_order():
    part = per_order({"client": 2.0, "postgres": 3.0}, orders=1000)
    assert part == {"cpu_ms_per_order": {"client": 2.0, "postgres": 3.0}, "ms_per_order": 5.0}


def test_only_the_clients_share_is_counted_when_the_pipeline_counts_less_of_it():
    # Three requests, of which the pipeline counts one client side: the server counts whole.
    part = per_order({"client": 0.9, "uvicorn": 0.6}, orders=1000, client_share=1 / 3)
    assert part["cpu_ms_per_order"] == {"client": 0.9, "uvicorn": 0.6}
    assert part["ms_per_order"] == 0.9


async def test_each_keeps_to_its_concurrency_and_runs_every_one():
    running, most, done = 0, 0, []

    async def one(i: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        done.append(i)

    await each(10, 3, one)
    assert most == 3
    assert sorted(done) == list(range(10))


def made_up(cpu_ms_per_order: float, floor_ms: float) -> dict:
    return {
        "throughput": {"orders_per_s": 100, "cpu_seconds_per_order": cpu_ms_per_order / 1000},
        "outbox_idle": {"commit_to_confirm_ms": {"p99": 5}},
        "raw": {
            "rabbitmq": {"confirmed_batches_of_500_per_s": 4000},
            "kafka": {"acked_send_then_flush_per_s": 60000},
            "postgres": {"outbox_transactions_per_s": 2500},
        },
        "floor": {"ms_per_order": floor_ms},
    }


def test_the_pipeline_is_judged_as_a_multiple_of_the_floor():
    judged = judge(made_up(cpu_ms_per_order=15, floor_ms=10))
    assert judged["pipeline_over_floor"] == 1.5
    verdict = [t for t in judged["targets"] if t["measure"] == "CPU per order, pipeline / floor"]
    assert [(t["measured"], t["met"]) for t in verdict] == [(1.5, True)]

    judged = judge(made_up(cpu_ms_per_order=25, floor_ms=10))
    assert judged["pipeline_over_floor"] == 2.5
    assert judged["targets"][-1]["met"] is False


def test_without_a_floor_there_is_no_multiple():
    results = made_up(cpu_ms_per_order=25, floor_ms=10)
    del results["floor"]
    judged = judge(results)
    assert "pipeline_over_floor" not in judged
    assert all("floor" not in t["measure"] for t in judged["targets"])
