"""The pipeline's targets, how a run compares with them, and the printed report."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table

# On a 2-core machine.
ORDERS_PER_S = 200
CPU_MS_PER_ORDER = 10  # every process counted: services, Postgres, RabbitMQ, Kafka
P99_MS_AT_100_PER_S = 150
IDLE_OUTBOX_P99_MS = 10
# Anywhere: the pipeline's CPU per order over the floor's (the order's parts on their own).
OVER_FLOOR = 1.5


def judge(results: dict, cores: int | None = None) -> dict:
    """Add the slowest raw part, the pipeline's fraction of it, each target's verdict, and the
    best the machine allows (`ceiling`) when the floor was measured; `cores`: those this process
    may run on, unless given."""
    cores = cores or len(os.sched_getaffinity(0))
    raw, throughput = results["raw"], results["throughput"]
    slowest_name, slowest = min(
        (("rabbitmq confirmed publishes", raw["rabbitmq"]["confirmed_batches_of_500_per_s"]),
         ("kafka acked produces", raw["kafka"]["acked_send_then_flush_per_s"]),
         ("postgres outbox transactions", raw["postgres"]["outbox_transactions_per_s"])),
        key=lambda part: part[1],
    )  # fmt: skip
    results["slowest_part"] = {"name": slowest_name, "per_s": slowest}
    results["pipeline_fraction_of_slowest"] = round(throughput["orders_per_s"] / slowest, 3)
    cpu_ms = throughput["cpu_seconds_per_order"] * 1000
    floor = results.get("floor")
    best = ceiling(floor, throughput, cores) if floor else {}
    if best:
        results["ceiling"] = best
    # (measure, target, measured, met, the best this machine allows where the floor bounds it)
    targets = [
        ("orders/s, POST to paid", f">= {ORDERS_PER_S}", throughput["orders_per_s"],
         throughput["orders_per_s"] >= ORDERS_PER_S, best.get("orders_per_s")),
        ("CPU ms per order, all processes", f"<= {CPU_MS_PER_ORDER}", round(cpu_ms, 1),
         cpu_ms <= CPU_MS_PER_ORDER, best.get("cpu_ms_per_order")),
        ("outbox commit to confirm p99 ms, idle", f"< {IDLE_OUTBOX_P99_MS}",
         results["outbox_idle"]["commit_to_confirm_ms"]["p99"],
         results["outbox_idle"]["commit_to_confirm_ms"]["p99"] < IDLE_OUTBOX_P99_MS, None),
    ]  # fmt: skip
    if floor:
        over = round(cpu_ms / floor["ms_per_order"], 2)
        results["pipeline_over_floor"] = over
        targets.append(("CPU per order, pipeline / floor", f"<= {OVER_FLOOR}", over,
                        over <= OVER_FLOOR, None))  # fmt: skip
    if latency := results.get("latency"):
        p99 = latency["post_to_paid_ms"]["p99"]
        offered = latency["offered_rate_per_s"]
        # The target is set at 100/s; at another rate the figure is reported, not judged.
        met = p99 < P99_MS_AT_100_PER_S if offered >= 100 else None
        targets.append((f"POST to paid p99 ms at {offered:g}/s offered",
                        f"< {P99_MS_AT_100_PER_S} at 100/s", p99, met, None))  # fmt: skip
    results["targets"] = [
        {"measure": m, "target": t, "measured": v, "met": ok, "best_here": b}
        for m, t, v, ok, b in targets
    ]
    return results


def ceiling(floor: dict, throughput: dict, cores: int) -> dict:
    """The best these cores allow for the order's parts as this design does them: every core
    busy with nothing but those parts at their floor (the same requests, transactions and
    messages on plain clients and the same servers) and the load generator, which shares them.

    A target past it is out of this machine's reach whatever else the services' code does: it
    takes more cores, cheaper parts (servers, drivers), or fewer round trips than the design's.
    Empty when the floor could not count every server's CPU.
    """
    floor_ms = floor["ms_per_order"]
    if floor.get("servers_not_counted") or not floor_ms:
        return {}
    alone = round(cores * 1000 / floor_ms, 1)
    best = {"cores": cores, "cpu_ms_per_order": floor_ms, "load_generator_ms_per_order": None,
            "orders_per_s": alone, "orders_per_s_without_load_generator": alone}  # fmt: skip
    if throughput.get("paid") and "load_generator_cpu_seconds" in throughput:
        load_ms = throughput["load_generator_cpu_seconds"] * 1000 / throughput["paid"]
        best["load_generator_ms_per_order"] = round(load_ms, 2)
        best["orders_per_s"] = round(cores * 1000 / (floor_ms + load_ms), 1)
    return best


def _phase_rows(name: str, phase: dict) -> list[tuple[str, str]]:
    lat, box = phase["post_to_paid_ms"], phase["outbox_write_to_confirm_ms"]
    busiest = sorted(phase["cpu_seconds"].items(), key=lambda kv: -kv[1])
    per_order = {k: v * 1000 / max(phase["paid"], 1) for k, v in busiest}
    return [
        (f"{name}: orders paid / posted", f"{phase['paid']} / {phase['orders']}"),
        (f"{name}: failed posts", f"{phase['failures']}"),
        (f"{name}: orders/s, POST to paid", f"{phase['orders_per_s']:,.1f}"),
        (f"{name}: POST to paid p50 / p95 / p99 ms", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f}"),
        (f"{name}: outbox write to confirm p50 / p99 ms", f"{box['p50']:.1f} / {box['p99']:.1f}"),
        (f"{name}: CPU ms per order, all processes", f"{phase['cpu_seconds_per_order'] * 1000:.1f}"),
        (f"{name}: CPU ms per order by process", ", ".join(f"{k} {v:.1f}" for k, v in per_order.items())),
        (f"{name}: share of all processes' CPU, by process", process_shares(phase)),
        (f"{name}: of it in the kernel, by process", kernel_shares(phase)),
        (f"{name}: webhooks applied / pending (came before their payment)", webhook_outcomes(phase)),
        (f"{name}: load generator CPU ms per order (not counted)",
         f"{phase['load_generator_cpu_seconds'] * 1000 / max(phase['paid'], 1):.1f}"),
    ]  # fmt: skip


def webhook_outcomes(phase: dict) -> str:
    """What payments answered the provider's webhooks (older results have no such figure)."""
    outcomes = phase.get("webhook_outcomes")
    if outcomes is None:
        return "not measured"
    return f"{outcomes.get('applied', 0)} / {outcomes.get('pending', 0)}"


def cpu_shares(phase: dict) -> dict[str, float]:
    """Each process's CPU as a percentage of all the processes' CPU; {} when none was measured.

    The machine's speed drifts between runs minutes apart, moving every process's figure
    together; a change to one process shows in its share, which that drift moves far less: by
    up to a point between two runs of the same code (bench/README.md, "A thirteenth round").
    """
    cpu = phase.get("cpu_seconds", {})
    total = sum(cpu.values())
    return {name: 100 * seconds / total for name, seconds in cpu.items()} if total else {}


def process_shares(phase: dict) -> str:
    """Each process's share of all the processes' CPU (`cpu_shares`), busiest first."""
    busiest = sorted(cpu_shares(phase).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {share:.1f}%" for k, share in busiest) or "not measured"


def kernel_shares(phase: dict) -> str:
    """Each process's system CPU as a share of its CPU (older results have no such figure)."""
    kernel = phase.get("kernel_cpu_seconds")
    if not kernel:
        return "not measured"
    cpu = phase["cpu_seconds"]
    return ", ".join(f"{k} {100 * kernel[k] / cpu[k]:.0f}%" for k in cpu if cpu[k] and k in kernel)


def floor_table(floor: dict, over: float | None = None) -> Table:
    """CPU ms per order of each part on its own, by process, their sum, and the pipeline's
    multiple of it (`over`)."""
    table = Table(title=f"the floor: an order's parts on their own ({floor['orders']} orders, "
                  f"{floor['concurrency']} at a time)")  # fmt: skip
    table.add_column("part")
    table.add_column("CPU ms per order, by process")
    table.add_column("counted", justify="right")
    for name, part in floor["parts"].items():
        processes = ", ".join(f"{k} {v:.2f}" for k, v in part["cpu_ms_per_order"].items())
        table.add_row(name, processes, f"{part['ms_per_order']:.2f}")
    table.add_row("floor", "", f"{floor['ms_per_order']:.2f}")
    if over is not None:
        table.add_row("pipeline / floor", "CPU per order, all processes", f"{over:.2f}x")
    if floor["servers_not_counted"]:
        table.add_row("not counted", ", ".join(floor["servers_not_counted"]), "")
    return table


def report(results: dict) -> None:
    console = Console()
    table = Table(
        title=f"switchyard pipeline ({results['backend']}, {results['instances']} instance(s) each)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    throughput = results["throughput"]
    rows = _phase_rows(f"{throughput['concurrency']} in flight", throughput)
    if latency := results.get("latency"):
        rows += _phase_rows(f"{latency['offered_rate_per_s']:g}/s offered", latency)
    raw, idle = results["raw"], results["outbox_idle"]["commit_to_confirm_ms"]
    rows += [
        ("outbox commit to confirm p50 / p99 ms, idle", f"{idle['p50']:.1f} / {idle['p99']:.1f}"),
        ("raw: RabbitMQ confirmed publishes/s", f"{raw['rabbitmq']['confirmed_batches_of_500_per_s']:,.0f}"),
        ("raw: Kafka acked produces/s", f"{raw['kafka']['acked_send_then_flush_per_s']:,.0f}"),
        ("raw: Postgres outbox transactions/s", f"{raw['postgres']['outbox_transactions_per_s']:,.0f}"),
        (f"pipeline / slowest part ({results['slowest_part']['name']})",
         f"{results['pipeline_fraction_of_slowest']:.3f}"),
        ("webhook attempts that failed / given up", f"{results['webhook_retries']} / {results['webhook_failures']}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if floor := results.get("floor"):
        console.print(floor_table(floor, results["pipeline_over_floor"]))
    verdicts = Table(title="targets (set for 2 cores)")
    for column in ("measure", "target", "measured", "met", "best here (the floor on every core)"):
        verdicts.add_column(column)
    for t in results["targets"]:
        met = {True: "[green]yes", False: "[red]no", None: "[yellow]not judged"}[t["met"]]
        best = "" if t.get("best_here") is None else f"{t['best_here']:,.1f}"
        verdicts.add_row(t["measure"], t["target"], f"{t['measured']:,.1f}", met, best)
    console.print(verdicts)
    if best := results.get("ceiling"):
        load = best["load_generator_ms_per_order"]
        beside = "" if load is None else f" and the load generator ({load:.2f} ms)"
        console.print(
            f"best here: {best['cores']} cores doing nothing but the order's parts at their floor "
            f"({best['cpu_ms_per_order']:.2f} ms){beside} serve {best['orders_per_s']:,.1f} "
            f"orders/s ({best['orders_per_s_without_load_generator']:,.1f} without the load "
            "generator); a target past that takes more cores, cheaper parts, or fewer round "
            "trips than this design's."
        )
