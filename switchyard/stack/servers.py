"""The three servers of the native stack, each started, checked and stopped with its own tools."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

from switchyard.stack import system
from switchyard.stack.daemon import Daemon
from switchyard.stack.health import kafka_brokers
from switchyard.stack.kafka_release import JVM_OPTIONS, KAFKA_VERSION, broker_settings
from switchyard.stack.processes import StackError, alive, as_user, chown_tree, kill, tail

ADMIN_USER, ADMIN_PASSWORD = "switchyard", "switchyard"


class Postgres:
    """A cluster run with pg_ctl. After a crash, pg_ctl starts it over the stale postmaster.pid
    as soon as the old postmaster's pid is gone, and the cluster recovers from its WAL."""

    def __init__(self, root: Path, port: int, *, ephemeral: bool):
        self.root, self.port, self.ephemeral = root, port, ephemeral
        self.data, self.log = root / "data", root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [*as_user("postgres"), str(system.postgres_bin() / program), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def _create(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        chown_tree(self.root, "postgres")
        result = self._run("initdb", "-D", str(self.data), "-U", ADMIN_USER, "--pwfile", str(pwfile),
                           "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                           "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        if self.ephemeral:  # test data is thrown away: no flushes to disk
            # What these give up is lost only when the machine stops, never when Postgres
            # crashes: a committed transaction's WAL is written out before COMMIT returns
            # (synchronous_commit stays on), so a crash test still loses nothing committed.
            # In the cluster's own config, so a restart keeps them.
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("fsync = off\nfull_page_writes = off\n")

    def start(self, timeout: float = 30) -> None:
        """Start the cluster (created on first use) and return once it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._create()
        chown_tree(self.root, "postgres")
        options = shlex.join(["-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                              "-c", "max_connections=300", "-c", f"unix_socket_directories={self.root}"])  # fmt: skip
        result = self._run("pg_ctl", "start", "-w", "-t", str(int(timeout)), "-D", str(self.data),
                           "-l", str(self.log), "-o", options)  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL on port {self.port} did not start: {result.stderr.strip()}"
                + tail(self.log)
            )

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def server_pid(self) -> int | None:
        """The postmaster's pid, from the first line of its lock file."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.running():  # fast: sessions are rolled back, then a clean shutdown
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))


class RabbitMQ:
    """A private node, detached, driven by rabbitmqctl through its pid file.

    The nodes of a cluster share one Erlang cookie (`cookie`) and the private epmd.
    """

    def __init__(
        self, root: Path, port: int, dist_port: int, epmd_port: int, *, cookie: str | None = None
    ):
        self.root, self.port, self.dist_port, self.epmd_port = root, port, dist_port, epmd_port
        self.cookie = cookie
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

    def _run(
        self, program: str, *args: str, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        cmd = [*as_user("rabbitmq"), str(system.rabbitmq_sbin() / program), *args]
        return subprocess.run(cmd, env={**os.environ, **self.env()}, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        """Start the node detached and return once its application runs."""
        for sub in ("home", "mnesia", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text("log.console = false\nlog.file.level = info\n")
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        if self.cookie:  # Erlang reads it from $HOME and refuses it unless only its owner can
            cookie = self.root / "home" / ".erlang.cookie"
            cookie.unlink(missing_ok=True)
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        self.pidfile.unlink(missing_ok=True)  # `wait` below must read the new node's pid
        chown_tree(self.root, "rabbitmq")
        started = self._run("rabbitmq-server", "-detached", cwd=self.root)
        # `wait` waits for the pid file, then for the node's application to be running.
        if started.returncode == 0:
            started = self._run("rabbitmqctl", "-n", self.node, "wait", str(self.pidfile),
                                "--timeout", str(int(timeout)), timeout=timeout + 5)  # fmt: skip
        if started.returncode != 0:
            raise StackError(
                f"RabbitMQ node {self.node} did not start: {started.stderr or started.stdout}"
                + tail(self.log)
            )

    def running(self) -> bool:
        try:
            return self._run("rabbitmqctl", "-n", self.node, "status", timeout=30).returncode == 0
        except subprocess.TimeoutExpired:  # a node that does not answer is no use either
            return False

    def server_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def join(self, seed: RabbitMQ) -> None:
        """Join the cluster of `seed` (a new node only: join_cluster resets its data first)."""
        for args in (("stop_app",), ("join_cluster", seed.node), ("start_app",)):
            result = self._run("rabbitmqctl", "-n", self.node, *args)
            if result.returncode != 0:
                raise StackError(
                    f"RabbitMQ node {self.node} could not join {seed.node} ({args[0]}): "
                    f"{result.stderr or result.stdout}" + tail(self.log)
                )

    def cluster_nodes(self) -> list[str]:
        """The nodes this node's cluster has (running or not); itself alone when unclustered."""
        result = self._run("rabbitmqctl", "-n", self.node, "cluster_status", "--formatter", "json",
                           timeout=30)  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"rabbitmqctl cluster_status failed: {result.stderr or result.stdout}")
        return json.loads(result.stdout)["disk_nodes"]

    def queues(self) -> list[dict]:
        """Each queue's name, type, members and online members, as the node reports them."""
        result = self._run("rabbitmqctl", "-n", self.node, "list_queues", "--formatter", "json",
                           "-q", "name", "type", "members", "online", timeout=30)  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"rabbitmqctl list_queues failed: {result.stderr or result.stdout}")
        return json.loads(result.stdout)

    def stop(self) -> None:
        if process := alive(self.server_pid()):
            # `stop` with the pid file returns once the node's process is gone.
            stopped = self._run("rabbitmqctl", "-n", self.node, "stop", str(self.pidfile))
            if stopped.returncode != 0:  # a node that does not answer
                kill(process)


def stop_epmd(port: int) -> None:
    """End the epmd our nodes started on a private port: it is ours, once no node is left."""
    if epmd := shutil.which("epmd"):
        subprocess.run([epmd, "-port", str(port), "-kill"], capture_output=True, check=False)


class Kafka:
    """One Apache Kafka node in KRaft mode (broker and controller), run from its Maven jars.

    Alone it is its own controller quorum; in a cluster, `voters` lists every node's id and
    controller port, and all are formatted with the same `cluster_id`.
    """

    def __init__(
        self,
        root: Path,
        port: int,
        controller_port: int,
        *,
        node_id: int = 1,
        voters: dict[int, int] | None = None,
        cluster_id: str | None = None,
        heap: tuple[str, ...] = ("-Xms256m", "-Xmx1g"),
    ):
        self.root, self.port, self.controller_port = root, port, controller_port
        self.node_id, self.voters, self.cluster_id, self.heap = node_id, voters, cluster_id, heap
        self.data, self.config = root / "data", root / "server.properties"
        name = f"kafka-{node_id}" if voters else "kafka"
        self.daemon = Daemon(name, root / "kafka.pid", root / "kafka.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        if self.voters:  # a static quorum: every node knows every controller from the start
            quorum = {"controller.quorum.voters": ",".join(
                f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items()))}  # fmt: skip
        else:
            quorum = {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            **quorum,
            "log.dirs": str(self.data),
            **broker_settings(len(self.voters) if self.voters else 1),
        }
        self.config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _java(self) -> list[str]:
        """The JVM command with the broker's jars, up to the main class."""
        jars = system.kafka_jars(KAFKA_VERSION)
        # KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS, as Kafka's own scripts read them,
        # override the heap and the options we chose.
        heap = os.environ.get("KAFKA_HEAP_OPTS", "").split() or list(self.heap)
        tuning = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", "").split() or list(JVM_OPTIONS)
        return [str(system.java()), *heap, *tuning, "-cp", f"{jars}/*",
                f"-Dlog4j2.configurationFile={KAFKA_LOG_CONFIG}"]  # fmt: skip

    def start(self, timeout: float = 90) -> None:
        """Start the node (its storage formatted on first use); return once it answers metadata."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        java = self._java()
        if not (self.data / "meta.properties").exists():  # a new node: format its storage once
            # Alone, the node is its quorum's one voter (--standalone); in a cluster the voters
            # are in the config already.
            quorum = [] if self.voters else ["--standalone"]
            format_storage = [*java, "kafka.tools.StorageTool", "format", *quorum,
                              "--cluster-id", self.cluster_id or new_cluster_id(),
                              "--config", str(self.config)]  # fmt: skip
            result = subprocess.run(format_storage, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(
                    f"formatting Kafka's storage failed:\n{result.stdout}{result.stderr}"
                )
        self.daemon.start([*java, "kafka.Kafka", str(self.config)], self.port,
                          lambda: answers_metadata(self.bootstrap), timeout=timeout, cwd=self.root)  # fmt: skip

    def running(self) -> bool:
        return self.daemon.running()

    def server_pid(self) -> int | None:
        return self.daemon.pid()

    def stop(self) -> None:
        self.daemon.stop(timeout=30)  # SIGTERM: a controlled shutdown, logs closed clean


KAFKA_LOG_CONFIG = Path(__file__).parent / "kafka" / "log4j2.properties"


def new_cluster_id() -> str:
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
