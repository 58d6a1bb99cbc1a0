"""The stack as local processes: Postgres from the system binaries, a private RabbitMQ node, Kafka."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import (
    StackError,
    free_port,
    pid_alive,
    pid_mentions,
    port_is_free,
    wait_until,
)
from switchyard.stack.servers import Kafka, Postgres, RabbitMQ

DATABASE = "switchyard"


@dataclass
class Ports:
    """The ports of one native stack, kept in its state directory."""

    postgres: int
    amqp: int
    rabbit_dist: int
    epmd: int
    kafka: int
    kafka_controller: int

    @classmethod
    def choose(cls, preferred: dict[str, int] | None = None) -> Ports:
        """Preferred ports where free (stable URLs for `make up`), any free port otherwise."""
        chosen: dict[str, int] = {}
        for name in (f.name for f in fields(cls)):
            port = (preferred or {}).get(name)
            while port is None or not port_is_free(port) or port in chosen.values():
                port = free_port()
            chosen[name] = port
        return cls(**chosen)


class NativeStack:
    """Three servers under one state directory; `ports.json` there lets a later run find them."""

    def __init__(
        self, state: Path, *, ephemeral: bool = False, preferred: dict[str, int] | None = None
    ):
        self.state = state.resolve()
        saved = self.state / "ports.json"
        self.ports = Ports.choose(preferred)
        if saved.exists():  # a port added since the state was written gets a new free one
            self.ports = Ports(**{**self.ports.__dict__, **json.loads(saved.read_text())})
        self.ephemeral = ephemeral
        self.postgres = Postgres(self.state / "postgres", self.ports.postgres, ephemeral=ephemeral)
        self.rabbitmq = RabbitMQ(
            self.state / "rabbitmq", self.ports.amqp, self.ports.rabbit_dist, self.ports.epmd
        )
        self.kafka = Kafka(self.state / "kafka", self.ports.kafka, self.ports.kafka_controller)

    @property
    def servers(self) -> dict[str, Postgres | RabbitMQ | Kafka]:
        return {"postgres": self.postgres, "rabbitmq": self.rabbitmq, "kafka": self.kafka}

    @property
    def endpoints(self) -> Endpoints:
        url = self.postgres.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        return Endpoints("native", url, self.rabbitmq.url, self.kafka.bootstrap, str(self.state))

    def down(self) -> list[str]:
        """The servers whose process is not running (a pid now used by another program counts)."""
        marker = str(self.state)
        return [
            name
            for name, server in self.servers.items()
            if not ((pid := server.server_pid()) and pid_alive(pid) and pid_mentions(pid, marker))
        ]

    def start(self, names: list[str] | None = None) -> Endpoints:
        """Start the named servers (all by default) in parallel and wait until each answers.

        Each keeps its data from an earlier run; on failure, what this call started is stopped.
        """
        chosen = {name: self.servers[name] for name in (self.servers if names is None else names)}
        if not chosen:
            return self.endpoints
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "ports.json").write_text(json.dumps(self.ports.__dict__))
        marker = str(self.state)
        for name, server in chosen.items():
            try:  # a crashed server's last processes may hold its port for a moment
                wait_until(lambda p=server.port: port_is_free(p), 15, f"port {server.port} free")
            except StackError:
                raise StackError(
                    f"port {server.port} for {name} is in use by another program; "
                    f"stop it, or remove {self.state} so new ports are chosen"
                ) from None
        try:
            with ThreadPoolExecutor(len(chosen)) as pool:
                list(pool.map(lambda s: (s.start(), s.wait()), chosen.values()))
        except BaseException:
            with ThreadPoolExecutor(len(chosen)) as pool:
                list(pool.map(lambda s: s.stop(marker), chosen.values()))
            raise
        return self.endpoints

    def stop(self) -> None:
        marker = str(self.state)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.stop(marker), self.servers.values()))

    def crash(self, name: str) -> None:
        """SIGKILL one server's main process, as a crash would end it, and wait until it is gone."""
        pid = self.servers[name].server_pid()
        if pid is None or not pid_alive(pid):
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 30, f"{name} (pid {pid}) to end")


def crash_and_restart(endpoints: Endpoints, name: str) -> None:
    """Crash one server of a native stack and start it again on its ports and data (chaos)."""
    if endpoints.backend != "native" or endpoints.state is None:
        raise StackError("only a native stack's servers can be crashed and restarted from here")
    stack = NativeStack(Path(endpoints.state))
    stack.crash(name)
    stack.start([name])
