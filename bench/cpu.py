"""CPU seconds used by a set of processes and their children, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(") ", 1)[1].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def tree(pid: int) -> list[int]:
    """`pid` and every descendant (Postgres backends, Erlang helpers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += _children(current)
    return found


def cpu_seconds(roots: dict[str, int], *, kernel_only: bool = False) -> dict[str, float]:
    """user+system seconds per named process tree, including children that already exited;
    with `kernel_only`, the system part alone (syscalls, socket writes and reads, wake-ups)."""
    usage: dict[str, float] = {}
    for name, root in roots.items():
        total = 0
        for pid in tree(root):
            fields = _stat(pid)
            if fields:  # utime, stime, cutime, cstime are fields 14-17 (index 11-14 here)
                total += sum(int(v) for v in (fields[12:15:2] if kernel_only else fields[11:15]))
        usage[name] = total / TICKS
    return usage
