"""The comparison of two trees' benchmark runs: made-up results, and a tree whose bench is a stub."""

from __future__ import annotations

import json
import subprocess

import pytest
from rich.console import Console

from bench.compare import (
    CompareError,
    copied,
    pairs_table,
    run_bench,
    shares,
    shares_table,
    turns,
)

pytestmark = pytest.mark.unit


def run(cpu: dict[str, float], *, orders: int = 1000, orders_per_s: float = 80.0) -> dict:
    """A made-up `make bench` result: each process's CPU seconds over `orders` orders."""
    return {
        "throughput": {
            "cpu_seconds": cpu,
            "cpu_seconds_per_order": sum(cpu.values()) / orders,
            "orders_per_s": orders_per_s,
        },
        "pipeline_over_floor": 2.0,
    }


def rows(table) -> dict[str, list[str]]:
    """The table's rows as printed, by their first cell."""
    console = Console(record=True, width=200)
    console.print(table)
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in console.export_text().splitlines()
        if line.count("│") > 2
    ]
    return {row[0]: row[1:] for row in cells if row[0] and row[0] not in ("pair", "process")}


def test_the_first_run_of_a_pair_alternates_between_the_trees():
    assert list(turns(3)) == [("base", "this"), ("this", "base"), ("base", "this")]


def test_shares_are_percentages_of_all_the_processes_cpu():
    assert shares(run({"orders": 6.0, "postgres": 2.0})) == {"orders": 75.0, "postgres": 25.0}
    assert shares({}) == {}


def test_each_pair_sets_the_base_beside_this_tree_and_counts_where_this_is_lower():
    pairs = [
        {"first": "base", "base": run({"orders": 20.0}), "this": run({"orders": 18.0})},
        {"first": "this", "base": run({"orders": 15.0}), "this": run({"orders": 16.0})},
    ]
    table = pairs_table(pairs)
    assert rows(table) == {
        "1": ["base", "20.0 / 18.0", "80.0 / 80.0", "2.0 / 2.0"],
        "2": ["this", "15.0 / 16.0", "80.0 / 80.0", "2.0 / 2.0"],
    }
    assert table.caption.endswith("lower in 1 of 2 pairs")


def test_a_share_that_fell_is_counted_even_when_the_whole_rose():
    # The machine slowed between the two runs of each pair: users cost more in both, and
    # orders took a smaller part of the whole in both.
    pairs = [
        {"first": "base", "base": run({"orders": 6, "users": 4}), "this": run({"orders": 6, "users": 6})},
        {"first": "this", "base": run({"orders": 6, "users": 4}), "this": run({"orders": 7, "users": 7})},
    ]  # fmt: skip
    assert rows(shares_table(pairs)) == {
        "orders": ["60.0 / 50.0", "60.0 / 50.0", "2 of 2"],
        "users": ["40.0 / 50.0", "40.0 / 50.0", "0 of 2"],
    }


def test_a_process_only_one_tree_measured_is_shown_as_missing_on_the_other():
    pairs = [{"first": "base", "base": run({"orders": 1, "relay": 1}), "this": run({"orders": 1, "kafka": 1})}]  # fmt: skip
    shown = rows(shares_table(pairs))
    assert shown["kafka"] == ["- / 50.0", "0 of 1"]
    assert shown["relay"] == ["50.0 / -", "0 of 1"]


STUB = """\
bench:
\tmkdir -p bench/results
\tprintf '{"venv": "%s", "args": "%s", "pythonpath": "%s"}' "$(VENV)" "$(BENCH_ARGS)" "$$PYTHONPATH" \\
\t\t> bench/results/pipeline-1.json
"""


def test_a_tree_is_benchmarked_on_the_environment_it_is_given_not_the_callers(
    tmp_path, monkeypatch
):
    (tmp_path / "Makefile").write_text(STUB)
    monkeypatch.setenv("VENV", "/elsewhere")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("MAKEFLAGS", "-- VENV=/elsewhere")
    result = run_bench(tmp_path, "--rate 0", tmp_path / "log")
    assert result == {"venv": ".venv", "args": "--rate 0", "pythonpath": ""}


def test_a_bench_that_writes_no_result_is_refused_in_plain_words(tmp_path):
    (tmp_path / "Makefile").write_text("bench:\n\t@echo no servers here; exit 2\n")
    with pytest.raises(CompareError, match="wrote no pipeline result"):
        run_bench(tmp_path, "", tmp_path / "log")
    assert "no servers here" in (tmp_path / "log").read_text()


def test_a_result_from_an_earlier_run_is_not_taken_for_this_one(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "pipeline-0.json").write_text(json.dumps({"old": True}))
    (tmp_path / "Makefile").write_text("bench:\n\t@true\n")
    with pytest.raises(CompareError):
        run_bench(tmp_path, "", tmp_path / "log")


def test_this_tree_is_copied_as_it_is_on_disk_without_what_git_ignores(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text(".venv/\n")
    (tmp_path / "kept.py").write_text("committed")
    (tmp_path / "gone.py").write_text("committed")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    (tmp_path / "kept.py").write_text("changed, not committed")
    (tmp_path / "gone.py").unlink()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "new.py").write_text("not added yet")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "python").write_text("ignored")
    with copied(tmp_path) as tree:
        files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
        assert files == [".gitignore", "bench/new.py", "kept.py"]
        assert (tree / "kept.py").read_text() == "changed, not committed"
    assert not tree.exists()
