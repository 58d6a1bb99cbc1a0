"""The stack as local processes: Postgres from the system binaries, a private RabbitMQ node, Kafka."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError, alive, free_port, kill, port_is_free, wait_until
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
        """The servers that are not running, each asked with its own tool or pid file."""
        with ThreadPoolExecutor(3) as pool:
            running = list(pool.map(lambda s: s.running(), self.servers.values()))
        return [name for name, up in zip(self.servers, running, strict=True) if not up]

    def start(self, names: list[str] | None = None) -> Endpoints:
        """Start the named servers (all by default) in parallel; each returns once it answers.

        Each keeps its data from an earlier run; on failure, what this call started is stopped.
        """
        chosen = {name: self.servers[name] for name in (self.servers if names is None else names)}
        if not chosen:
            return self.endpoints
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "ports.json").write_text(json.dumps(self.ports.__dict__))
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
                list(pool.map(lambda s: s.start(), chosen.values()))
        except BaseException:
            self._stop(chosen.values())
            raise
        return self.endpoints

    def stop(self) -> None:
        self._stop(self.servers.values())

    @staticmethod
    def _stop(servers) -> None:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.stop(), servers))

    def crash(self, name: str) -> None:
        """SIGKILL one server's main process, as a crash would end it, and wait until it is gone."""
        process = alive(self.servers[name].server_pid())
        if process is None:
            raise StackError(f"{name} is not running")
        kill(process)


def crash_and_restart(endpoints: Endpoints, name: str) -> None:
    """Crash one server of a native stack and start it again on its ports and data (chaos)."""
    if endpoints.backend != "native" or endpoints.state is None:
        raise StackError("only a native stack's servers can be crashed and restarted from here")
    stack = NativeStack(Path(endpoints.state))
    stack.crash(name)
    stack.start([name])
