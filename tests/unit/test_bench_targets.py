"""The benchmark's verdicts against its targets, from made-up results."""

from __future__ import annotations

import pytest

from bench.targets import judge, kernel_shares, process_shares, webhook_outcomes

pytestmark = pytest.mark.unit


def results(
    *, orders_per_s: float, idle_p99: float, cpu_ms: float = 1, latency: dict | None = None
) -> dict:
    made_up = {
        "throughput": {"orders_per_s": orders_per_s, "cpu_seconds_per_order": cpu_ms / 1000},
        "outbox_idle": {"commit_to_confirm_ms": {"p99": idle_p99}},
        "raw": {
            "rabbitmq": {"confirmed_batches_of_500_per_s": 4000},
            "kafka": {"acked_send_then_flush_per_s": 60000},
            "postgres": {"outbox_transactions_per_s": 2500},
        },
    }
    if latency:
        made_up["latency"] = latency
    return made_up


def verdicts(judged: dict) -> list:
    return [t["met"] for t in judged["targets"]]


def test_the_slowest_part_is_the_yardstick():
    judged = judge(results(orders_per_s=500, idle_p99=5))
    assert judged["slowest_part"] == {"name": "postgres outbox transactions", "per_s": 2500}
    assert judged["pipeline_fraction_of_slowest"] == 0.2


def test_each_target_is_met_or_missed():
    met = results(orders_per_s=200, cpu_ms=10, idle_p99=9.9)
    missed = results(orders_per_s=199, cpu_ms=10.1, idle_p99=10)
    assert verdicts(judge(met)) == [True, True, True]
    assert verdicts(judge(missed)) == [False, False, False]


def test_the_pipeline_is_judged_against_its_floor():
    judged = judge(results(orders_per_s=1, idle_p99=1, cpu_ms=15) | {"floor": {"ms_per_order": 10}})
    assert judged["pipeline_over_floor"] == 1.5
    assert verdicts(judged)[-1] is True
    judged = judge(
        results(orders_per_s=1, idle_p99=1, cpu_ms=15.1) | {"floor": {"ms_per_order": 10}}
    )
    assert verdicts(judged)[-1] is False


def test_latency_is_judged_only_at_the_rate_the_target_names():
    at_100 = {"offered_rate_per_s": 100, "post_to_paid_ms": {"p99": 149}}
    at_50 = {"offered_rate_per_s": 50, "post_to_paid_ms": {"p99": 20}}
    assert verdicts(judge(results(orders_per_s=1, idle_p99=1, latency=at_100)))[-1] is True
    assert verdicts(judge(results(orders_per_s=1, idle_p99=1, latency=at_50)))[-1] is None


def test_the_kernel_share_of_each_process_is_shown_when_measured():
    phase = {"cpu_seconds": {"orders": 4.0, "postgres": 2.0, "idle": 0.0},
             "kernel_cpu_seconds": {"orders": 1.0, "postgres": 1.0, "idle": 0.0}}  # fmt: skip
    assert kernel_shares(phase) == "orders 25%, postgres 50%"
    assert kernel_shares({"cpu_seconds": {"orders": 4.0}}) == "not measured"


def test_the_webhooks_that_came_before_their_payment_are_shown_when_counted():
    assert webhook_outcomes({"webhook_outcomes": {"applied": 7, "pending": 3}}) == "7 / 3"
    assert webhook_outcomes({"webhook_outcomes": {"applied": 7}}) == "7 / 0"
    assert webhook_outcomes({}) == "not measured"


def test_each_process_share_of_the_whole_is_shown_busiest_first():
    phase = {"cpu_seconds": {"users": 1.0, "orders": 3.0, "postgres": 4.0}}
    assert process_shares(phase) == "postgres 50.0%, orders 37.5%, users 12.5%"
    assert process_shares({"cpu_seconds": {"orders": 0.0}}) == "not measured"


def test_the_best_the_machine_allows_is_the_floor_on_every_core():
    made_up = results(orders_per_s=70, idle_p99=1, cpu_ms=22) | {"floor": {"ms_per_order": 8}}
    made_up["throughput"] |= {"paid": 1000, "load_generator_cpu_seconds": 2.0}
    judged = judge(made_up, cores=2)
    # Two cores: 2,000 ms of CPU a second, 8 ms for the parts and 2 for the load generator.
    assert judged["ceiling"]["orders_per_s"] == 200
    assert judged["ceiling"]["orders_per_s_without_load_generator"] == 250
    best = {t["measure"]: t["best_here"] for t in judged["targets"]}
    assert best["orders/s, POST to paid"] == 200
    assert best["CPU ms per order, all processes"] == 8
    assert best["outbox commit to confirm p99 ms, idle"] is None


def test_without_the_load_generator_s_figure_the_best_is_the_floor_alone():
    made_up = results(orders_per_s=70, idle_p99=1, cpu_ms=22) | {"floor": {"ms_per_order": 8}}
    judged = judge(made_up, cores=2)
    assert judged["ceiling"]["orders_per_s"] == 250
    assert judged["ceiling"]["load_generator_ms_per_order"] is None


def test_nothing_is_said_of_the_best_the_machine_allows_without_a_whole_floor():
    without = judge(results(orders_per_s=70, idle_p99=1), cores=2)
    uncounted = {"floor": {"ms_per_order": 5, "servers_not_counted": ["kafka"]}}
    partial = judge(results(orders_per_s=70, idle_p99=1) | uncounted, cores=2)
    for judged in (without, partial):
        assert "ceiling" not in judged
        assert all(t["best_here"] is None for t in judged["targets"])
