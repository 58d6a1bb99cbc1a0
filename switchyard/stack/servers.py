"""The three servers of the native stack, each started, waited on and stopped by its pid."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from switchyard.stack import system
from switchyard.stack.health import kafka_brokers
from switchyard.stack.kafka_release import KAFKA_VERSION, broker_settings
from switchyard.stack.processes import (
    StackError,
    as_user,
    chown_tree,
    pid_alive,
    port_answers,
    spawn,
    terminate,
    wait_until,
    working_in,
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
            if self.ephemeral:  # test data is thrown away: no flushes to disk
                # What these give up is lost only when the machine stops, never when Postgres
                # crashes: a committed transaction's WAL is written out before COMMIT returns
                # (synchronous_commit stays on), so a crash test still loses nothing committed.
                # In the cluster's own config, so a restart keeps them.
                with (self.data / "postgresql.conf").open("a") as conf:
                    conf.write("fsync = off\nfull_page_writes = off\n")
        stale = self.data / "postmaster.pid"
        if stale.exists():  # left by a crash
            # The crashed postmaster's backends end by themselves within moments; until then
            # they hold its shared memory, and a new postmaster would refuse to start.
            wait_until(lambda: not working_in(self.data), 30, "the crashed postmaster's backends")
            stale.unlink()
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300",
                    "-c", f"unix_socket_directories={self.root}"]  # fmt: skip
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
        if epmd := shutil.which("epmd"):
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, check=False
            )


class Kafka:
    """One Apache Kafka node in KRaft mode (broker and controller), run from its Maven jars."""

    def __init__(self, root: Path, port: int, controller_port: int):
        self.root, self.port, self.controller_port = root, port, controller_port
        self.data, self.config = root / "data", root / "server.properties"
        self.log, self.pidfile = root / "kafka.log", root / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data),
            **broker_settings(),
        }
        self.config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _java(self) -> list[str]:
        """The JVM command with the broker's jars, up to the main class."""
        jars = system.kafka_jars(KAFKA_VERSION)
        return [str(system.java()), *KAFKA_JVM_OPTIONS, "-cp", f"{jars}/*",
                f"-Dlog4j2.configurationFile={KAFKA_LOG_CONFIG}"]  # fmt: skip

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        java = self._java()
        if not (self.data / "meta.properties").exists():  # a new node: format its storage once
            format_storage = [*java, "kafka.tools.StorageTool", "format", "--standalone",
                              "--cluster-id", _cluster_id(), "--config", str(self.config)]  # fmt: skip
            result = subprocess.run(format_storage, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(
                    f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}"
                )
        self.pid = spawn([*java, "kafka.Kafka", str(self.config)], self.log, cwd=self.root)
        self.pidfile.write_text(str(self.pid))

    def wait(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if not pid_alive(self.pid):
                raise StackError("kafka exited at start\n" + _tail(self.log))
            return port_answers(self.port) and answers_metadata(self.bootstrap)

        wait_until(ready, timeout, f"Apache Kafka on port {self.port}", self.log)

    def server_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def stop(self, marker: str) -> None:
        pid = self.server_pid()
        if pid:
            terminate(pid, marker, timeout=30)  # SIGTERM: a controlled shutdown, logs closed clean


# A small heap is plenty for one local node; G1 with short pauses as Kafka's own scripts run it.
KAFKA_JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                     "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")  # fmt: skip
KAFKA_LOG_CONFIG = Path(__file__).parent / "kafka" / "log4j2.properties"


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def answers_metadata(bootstrap: str) -> bool:
    """True when a Kafka broker at `bootstrap` answers a metadata request."""
    try:
        asyncio.run(kafka_brokers(bootstrap))
    except Exception:
        return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )
