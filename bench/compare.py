"""Two trees' `make bench`, run turn about on one machine: what a change did, beside the drift.

    python -m bench.compare [BASE] [--pairs 3] [--bench-args="--rate 0"]

A machine's speed drifts by a fifth or more between runs minutes apart, more than most changes
move an order's CPU (bench/README.md). So each pair runs BASE and this tree back to back, the
first of the two alternating from pair to pair, and the tables set their figures side by side,
with each process's share of all the processes' CPU: the drift moves every process together, so
a change to one process shows in its share, once it is larger than the spread the same code
shows on both sides (bench/README.md, "A thirteenth round"). BASE (HEAD unless given) is any git
revision, checked out into a worktree of its own; this tree is copied as it is on disk,
uncommitted changes included; each is measured by its own `make bench` in a virtual
environment of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import RESULTS, save
from bench.targets import cpu_shares
from switchyard.stack.control import STATE

HERE = Path(__file__).resolve().parents[1]
# make hands the variables set on its command line (VENV=...) to the makes it runs, through
# MAKEFLAGS and the environment: each tree's run gets its own instead.
NOT_PASSED_ON = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VENV", "VIRTUAL_ENV", "PYTHONPATH")


class CompareError(Exception):
    """A run that cannot be compared: a revision git does not know, or a bench that wrote no result."""


@contextmanager
def checked_out(revision: str) -> Iterator[Path]:
    """`revision` in a git worktree of its own, removed afterwards."""
    known = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if known.returncode:
        raise CompareError(f"git knows no revision {revision!r}")
    parent = Path(tempfile.mkdtemp(prefix="switchyard-base-"))
    tree, git = parent / "tree", ["git", "-C", str(HERE), "worktree"]
    try:
        subprocess.run([*git, "add", "--quiet", "--detach", str(tree), revision], check=True)
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=False, capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def copied(root: Path = HERE) -> Iterator[Path]:
    """The tree at `root` as it is on disk, in a directory of its own: each file git tracks or
    would add.

    Both sides then run from a new directory with an environment of their own: run from here,
    on the environment already in use, this tree's side came out a little apart from the same
    code in a worktree (bench/README.md, "A thirteenth round").
    """
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    parent = Path(tempfile.mkdtemp(prefix="switchyard-this-"))
    tree = parent / "tree"
    try:
        for name in filter(None, listed):
            source = root / name
            if source.is_file():  # a file deleted but not yet staged is listed too
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, tree / name)
        yield tree
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def run_bench(tree: Path, bench_args: str, log: Path) -> dict:
    """One `make bench` of `tree` on its own `.venv` (its output appended to `log`); its results."""
    results = tree / "bench" / "results"
    before = set(results.glob("pipeline-*.json"))
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED_ON}
    # Either side finds this checkout's `make up` (its servers' pids) where it is, not in its copy.
    env.setdefault("SWITCHYARD_STATE_DIR", str(STATE))
    command = ["make", "-C", str(tree), "bench", "VENV=.venv", f"BENCH_ARGS={bench_args}"]
    with log.open("a") as out:
        bench = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            failed = bench.wait()
        except KeyboardInterrupt:
            # The same Ctrl-C stops the bench, which then stops its servers: its tree and its
            # servers' state must outlive that.
            bench.wait()
            raise
    written = set(results.glob("pipeline-*.json")) - before
    if failed or len(written) != 1:
        raise CompareError(f"make bench in {tree} wrote no pipeline result (see {log})")
    return json.loads(written.pop().read_text())


def turns(pairs: int) -> Iterator[tuple[str, str]]:
    """Which tree runs first and which second in each pair: BASE first, then this tree first."""
    for n in range(pairs):
        yield ("base", "this") if n % 2 == 0 else ("this", "base")


def shares(results: dict) -> dict[str, float]:
    """Each process's share of all the processes' CPU in the throughput run."""
    return cpu_shares(results.get("throughput", {}))


def pairs_table(pairs: list[dict]) -> Table:
    """Pair by pair, the base's figure and this tree's, and which of them ran first."""
    lower = sum(1 for p in pairs if _lower(_cpu_ms(p["this"]), _cpu_ms(p["base"])))
    table = Table(
        title="base / this tree, pair by pair (the throughput run)",
        caption=f"this tree's CPU per order was the lower in {lower} of {len(pairs)} pairs",
    )
    for column in ("pair", "first", "CPU ms per order", "orders/s", "pipeline / floor"):
        table.add_column(column, justify="right")
    for n, pair in enumerate(pairs, 1):
        cells = [_side_by_side(pair, figure) for figure in (_cpu_ms, _orders_per_s, _over_floor)]
        table.add_row(str(n), pair["first"], *cells)
    return table


def shares_table(pairs: list[dict]) -> Table:
    """Each process's share of the CPU, base / this tree, pair by pair, and how often it fell."""
    table = Table(title="each process's share of all the processes' CPU (%), base / this tree")
    table.add_column("process")
    for n in range(1, len(pairs) + 1):
        table.add_column(f"pair {n}", justify="right")
    table.add_column("lower in", justify="right")
    names = dict.fromkeys(n for p in pairs for side in ("this", "base") for n in shares(p[side]))
    for name in names:
        cells = [(shares(p["base"]).get(name), shares(p["this"]).get(name)) for p in pairs]
        fell = sum(1 for base, this in cells if _lower(this, base))
        row = [_pair_text(base, this, "{:.1f}") for base, this in cells]
        table.add_row(name, *row, f"{fell} of {len(pairs)}")
    return table


def _cpu_ms(results: dict) -> float | None:
    per_order = results.get("throughput", {}).get("cpu_seconds_per_order")
    return per_order * 1000 if per_order is not None else None


def _orders_per_s(results: dict) -> float | None:
    return results.get("throughput", {}).get("orders_per_s")


def _over_floor(results: dict) -> float | None:
    return results.get("pipeline_over_floor")


def _lower(this: float | None, base: float | None) -> bool:
    return this is not None and base is not None and this < base


def _side_by_side(pair: dict, figure: Callable[[dict], float | None]) -> str:
    return _pair_text(figure(pair["base"]), figure(pair["this"]), "{:.1f}")


def _pair_text(base: float | None, this: float | None, form: str) -> str:
    return " / ".join(form.format(v) if v is not None else "-" for v in (base, this))


def compare(base: str, pairs: list[dict], count: int, bench_args: str) -> None:
    """Append `count` pairs of runs to `pairs`, each as soon as both its runs are done."""
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "compare.log"
    with checked_out(base) as base_tree, copied() as this_tree:
        trees = {"base": base_tree, "this": this_tree}
        for n, order in enumerate(turns(count), 1):
            pair = {"first": order[0]}
            for side in order:
                pair[side] = run_bench(trees[side], bench_args, log)
                cpu = _cpu_ms(pair[side])
                shown = f"{cpu:.1f} ms of" if cpu is not None else "no figure of"
                print(f"pair {n}: {side}, {shown} CPU per order")
            pairs.append(pair)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="HEAD", help="git revision to compare with")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs")
    parser.add_argument("--bench-args", default="", help="arguments for both trees' make bench")
    args = parser.parse_args()
    done: list[dict] = []
    try:
        compare(args.base, done, args.pairs, args.bench_args)
    except CompareError as error:
        sys.exit(f"bench-compare: {error}")
    finally:
        if done:  # what was measured is kept, even when a later run failed or was stopped
            console = Console()
            console.print(pairs_table(done))
            console.print(shares_table(done))
            print(f"results: {save('compare', {'base': args.base, 'pairs': done})}")
