"""What every local server and service shares: errors, ports, readiness waits, processes by pid."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import port_for
import psutil


class StackError(RuntimeError):
    """A server could not be started, reached or stopped; the message says what to do."""


def free_port() -> int:
    """A free TCP port below the ephemeral range (RabbitMQ fails with eaddrinuse inside it)."""
    return port_for.select_random(ports=set(range(20000, 32000)))


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Servers bind with SO_REUSEADDR; without it here, TIME_WAIT would look like "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, log: Path | None = None
) -> None:
    """Poll `check` until true; on timeout raise, with the tail of `log` when given."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(
                f"{what} did not happen within {timeout:.0f}s{tail(log) if log else ''}"
            )
        time.sleep(0.05)


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a server's log, to put in an error."""
    if not log.is_file():
        return ""
    last = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(last)


def alive(pid: int | None) -> psutil.Process | None:
    """The process `pid` while it runs. A zombie counts as ended: where init does not reap
    orphans (some containers), a killed server stays one, and its pid never disappears."""
    try:
        process = psutil.Process(pid) if pid else None
        return process if process and process.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def kill(process: psutil.Process, timeout: float = 30) -> None:
    """SIGKILL `process`, as a crash would end it, and wait until it and its children are gone:
    a crashed postmaster's backends end by themselves, and a new postmaster starts only then."""
    try:
        family = [process, *process.children(recursive=True)]
        process.kill()
    except psutil.NoSuchProcess:
        return
    _, left = psutil.wait_procs(family, timeout=timeout)
    if left:
        raise StackError(f"pids {[p.pid for p in left]} still run {timeout:.0f}s after SIGKILL")


def as_user(user: str) -> list[str]:
    """Prefix that runs a command as `user` when we are root (Postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def chown_tree(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        for item in [path, *path.rglob("*")]:
            shutil.chown(item, user, user)
