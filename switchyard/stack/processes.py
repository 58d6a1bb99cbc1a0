"""Starting, waiting on and ending the server processes this project starts itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import port_for


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


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, log: Path | None = None
) -> None:
    """Poll `check` until true; on timeout raise with the tail of the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = (
            "\n--- last lines of "
            + log.name
            + " ---\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        )
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def pid_mentions(pid: int, marker: str) -> bool:
    """True if the process's command line or environment names `marker` (guards against pid reuse)."""
    for part in ("cmdline", "environ"):
        try:
            if marker.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                return True
        except OSError:
            continue
    return False


def working_in(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(proc / "cwd")) == directory and pid_alive(int(proc.name)):
                    found.append(int(proc.name))
    return found


def terminate(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """End one process of ours by pid, escalating to SIGKILL; skip pids that are not ours."""
    if not pid_alive(pid) or not pid_mentions(pid, marker):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def as_user(user: str) -> list[str]:
    """Prefix that runs a command as `user` when we are root (Postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def chown_tree(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        for item in [path, *path.rglob("*")]:
            shutil.chown(item, user, user)


def spawn(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start a server in its own session so it outlives `make up` and ignores the terminal's ^C."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid
