"""The three servers of the native stack, each started, waited on and stopped by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from switchyard.stack import system
from switchyard.stack.processes import (
    StackError,
    as_user,
    chown_tree,
    pid_alive,
    port_answers,
    spawn,
    terminate,
    wait_until,
)

ADMIN_USER, ADMIN_PASSWORD = "switchyard", "switchyard"


class Postgres:
    def __init__(self, root: Path, port: int, *, ephemeral: bool):
        self.root, self.port, self.ephemeral = root, port, ephemeral
        self.data, self.log = root / "data", root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        bin_dir = system.postgres_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.root / "pwfile"
            pwfile.write_text(ADMIN_PASSWORD + "\n")
            chown_tree(self.root, "postgres")
            subprocess.run(
                [*as_user("postgres"), str(bin_dir / "initdb"), "-D", str(self.data), "-U", ADMIN_USER,
                 "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                check=True, capture_output=True,
            )  # fmt: skip
            pwfile.unlink()
        (self.data / "postmaster.pid").unlink(
            missing_ok=True
        )  # left by a crash; our pid check is below
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300",
                    "-c", f"unix_socket_directories={self.root}"]  # fmt: skip
        if self.ephemeral:  # test data is thrown away: trade durability for speed
            settings += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        chown_tree(self.root, "postgres")
        cmd = [
            *as_user("postgres"),
            str(bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
        ]
        self.pid = spawn(cmd + settings, self.log)

    def wait(self, timeout: float = 30) -> None:
        bin_dir = system.postgres_bin()

        def ready() -> bool:
            if not pid_alive(self.pid):
                raise StackError(f"postgres exited at start; see {self.log}\n" + _tail(self.log))
            probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
            return subprocess.run(probe, check=False).returncode == 0

        wait_until(ready, timeout, f"PostgreSQL on port {self.port}", self.log)

    def server_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def stop(self, marker: str) -> None:
        pid = self.server_pid() or getattr(self, "pid", None)
        if pid:
            terminate(pid, marker, sig=signal.SIGINT)  # SIGINT: fast shutdown, rolls back sessions


class RabbitMQ:
    def __init__(self, root: Path, port: int, dist_port: int, epmd_port: int):
        self.root, self.port, self.dist_port, self.epmd_port = root, port, dist_port, epmd_port
        self.node = f"switchyard-{port}@localhost"
        self.pidfile, self.log = root / "rabbit.pid", root / "log" / f"{self.node}.log"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        r = self.root
        # Every path is private, so the system's /etc/rabbitmq and cookie are never read or changed.
        return {
            "HOME": str(r / "home"), "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # rabbitmqctl's own node needs ports too; keep them below the ephemeral range.
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.dist_port + 1),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.dist_port + 10), "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"), "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_PID_FILE": str(self.pidfile), "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(r / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
        }  # fmt: skip

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [
            *as_user("rabbitmq"),
            str(system.rabbitmq_sbin() / "rabbitmqctl"),
            "-n",
            self.node,
            *args,
        ]
        env = {**os.environ, **self.env()}
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        sbin = system.rabbitmq_sbin()
        for sub in ("home", "mnesia", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text("log.console = false\nlog.file.level = info\n")
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        self.pidfile.unlink(missing_ok=True)
        chown_tree(self.root, "rabbitmq")
        cmd = [*as_user("rabbitmq"), str(sbin / "rabbitmq-server"), "-detached"]
        subprocess.run(cmd, env={**os.environ, **self.env()}, check=True, capture_output=True,
                       cwd=self.root, start_new_session=True)  # fmt: skip

    def wait(self, timeout: float = 60) -> None:
        wait_until(self.pidfile.exists, timeout, "RabbitMQ pid file", self.log)
        result = self._ctl(
            "wait", str(self.pidfile), "--timeout", str(int(timeout)), timeout=timeout + 5
        )
        if result.returncode != 0:
            raise StackError(
                f"RabbitMQ node {self.node} did not start: {result.stderr or result.stdout}"
            )
        wait_until(
            lambda: port_answers(self.port), timeout, f"RabbitMQ on port {self.port}", self.log
        )

    def server_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, marker: str) -> None:
        pid = self.server_pid()
        if pid and pid_alive(pid):
            self._ctl("stop", str(self.pidfile), timeout=60)
            terminate(pid, marker, sig=signal.SIGKILL)  # only if `stop` did not end it
        # Our node started its own epmd on a private port; it is ours to end.
        subprocess.run(
            ["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True, check=False
        )


class Tansu:
    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.log, self.pidfile = root / "tansu.log", root / "tansu.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(system.tansu_binary()), "broker", "--listener-url", listener,
               "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]  # fmt: skip
        self.pid = spawn(
            cmd, self.log, env={"SWITCHYARD_STACK": str(self.root.parent)}, cwd=self.root
        )
        self.pidfile.write_text(str(self.pid))

    def wait(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if not pid_alive(self.pid):
                raise StackError("tansu exited at start\n" + _tail(self.log))
            return port_answers(self.port)

        wait_until(ready, timeout, f"Tansu on port {self.port}", self.log)

    def server_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def stop(self, marker: str) -> None:
        pid = self.server_pid()
        if pid:
            terminate(pid, marker)


def _tail(path: Path, lines: int = 15) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )
