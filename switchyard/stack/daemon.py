"""Programs that outlive the process starting them: started by mirakuru, found again by pid file."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
from mirakuru import TCPExecutor
from mirakuru.base import ENV_UUID
from mirakuru.exceptions import AlreadyRunning, ExecutorError

from switchyard.stack.processes import StackError, alive, kill, tail


class _Launch(TCPExecutor):
    """Ready once the port accepts connections and `ready()` agrees; refused if the port is taken."""

    def __init__(self, command: list[str], port: int, ready: Callable[[], bool], **kwargs):
        super().__init__(command, host="127.0.0.1", port=port, **kwargs)
        self._ready = ready

    def after_start_check(self) -> bool:
        return super().after_start_check() and self._ready()

    @property
    def envvars(self) -> dict[str, str]:
        # mirakuru marks its children so that its exit hook can kill them, matching the exiting
        # pid as a substring of the mark. These must outlive `make up` and never be hit by
        # another process's exit, so they carry no mark.
        env = super().envvars
        del env[ENV_UUID]
        return env


class Daemon:
    """One program of the stack; its pid file holds its pid and start time, so a later process
    finds it again and a pid reused by another program is never taken for it."""

    def __init__(self, name: str, pidfile: Path, log: Path):
        self.name, self.pidfile, self.log = name, pidfile, log

    def start(
        self,
        command: list[str],
        port: int,
        ready: Callable[[], bool],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start `command` in its own session, logging to `log`; return once it is ready."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            launch = _Launch(command, port, ready, timeout=timeout, envvars=env,
                             cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            try:
                launch.start()
            except AlreadyRunning:
                raise StackError(
                    f"port {port} for {self.name} is in use by another program"
                ) from None
            except ExecutorError as exc:  # exited at start, or not ready in time (then killed)
                raise StackError(f"{self.name} did not start: {exc}{tail(self.log)}") from None
        process = psutil.Process(launch.process.pid)
        self.pidfile.write_text(f"{process.pid} {process.create_time()}\n")
        launch.process = None  # else mirakuru ends the program when the executor is collected

    def recorded(self) -> tuple[int, float] | None:
        """The pid and start time the pid file holds, or None without a readable one."""
        try:
            pid, started = self.pidfile.read_text().split()
            return int(pid), float(started)
        except (OSError, ValueError):
            return None

    def process(self) -> psutil.Process | None:
        if (record := self.recorded()) is None:
            return None
        pid, started = record
        process = alive(pid)
        return process if process and _same_start(process.create_time(), started) else None

    def pid(self) -> int | None:
        process = self.process()
        return process.pid if process else None

    def running(self) -> bool:
        return self.process() is not None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
        if process := self.process():
            process.terminate()
            _, left = psutil.wait_procs([process], timeout=timeout)
            for process in left:
                kill(process)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        if process := self.process():
            kill(process)


# A start time is the boot time plus the ticks since boot, and the boot time the kernel reports
# is whole seconds that move when the wall clock is stepped (NTP, a virtual machine's clock
# sync): the same program may read a second off its pid file. A pid reused by another program
# that started within two seconds of the first is not a case to meet.
_START_SLACK = 2.0


def _same_start(seen: float, recorded: float) -> bool:
    return abs(seen - recorded) < _START_SLACK
