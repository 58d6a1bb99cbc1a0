"""The stack as local processes: Postgres from the system binaries, a private RabbitMQ node, Tansu."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError, free_port, pid_alive, port_is_free
from switchyard.stack.servers import Postgres, RabbitMQ, Tansu

DATABASE = "switchyard"


@dataclass
class Ports:
    """The ports of one native stack, kept in its state directory."""

    postgres: int
    amqp: int
    rabbit_dist: int
    epmd: int
    kafka: int

    @classmethod
    def choose(cls, preferred: dict[str, int] | None = None) -> Ports:
        """Preferred ports where free (stable URLs for `make up`), any free port otherwise."""
        chosen: dict[str, int] = {}
        for name in ("postgres", "amqp", "rabbit_dist", "epmd", "kafka"):
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
        self.ports = (
            Ports(**json.loads(saved.read_text())) if saved.exists() else Ports.choose(preferred)
        )
        self.ephemeral = ephemeral
        self.postgres = Postgres(self.state / "postgres", self.ports.postgres, ephemeral=ephemeral)
        self.rabbitmq = RabbitMQ(
            self.state / "rabbitmq", self.ports.amqp, self.ports.rabbit_dist, self.ports.epmd
        )
        self.tansu = Tansu(self.state / "tansu", self.ports.kafka)

    @property
    def servers(self):
        return (self.postgres, self.rabbitmq, self.tansu)

    @property
    def endpoints(self) -> Endpoints:
        url = self.postgres.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        return Endpoints("native", url, self.rabbitmq.url, self.tansu.bootstrap, str(self.state))

    def running(self) -> list[bool]:
        return [bool((pid := s.server_pid()) and pid_alive(pid)) for s in self.servers]

    def start(self) -> Endpoints:
        """Start every server in parallel and wait until each really answers; undo all on failure."""
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "ports.json").write_text(json.dumps(self.ports.__dict__))
        for server, port in ((self.postgres, self.ports.postgres), (self.rabbitmq, self.ports.amqp),
                             (self.tansu, self.ports.kafka)):  # fmt: skip
            if not port_is_free(port):
                raise StackError(
                    f"port {port} for {type(server).__name__} is in use by another program; "
                    f"stop it, or remove {self.state} so new ports are chosen"
                )
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda s: (s.start(), s.wait()), self.servers))
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def stop(self) -> None:
        marker = str(self.state)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.stop(marker), self.servers))


def restart_rabbitmq(endpoints: Endpoints) -> None:
    """Stop the native RabbitMQ node and start it again on the same ports and data (for chaos)."""
    if endpoints.backend != "native" or endpoints.state is None:
        raise StackError("only a native stack's RabbitMQ can be restarted from here")
    stack = NativeStack(Path(endpoints.state))
    stack.rabbitmq.stop(str(stack.state))
    stack.rabbitmq.start()
    stack.rabbitmq.wait()
