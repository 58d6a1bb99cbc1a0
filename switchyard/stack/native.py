"""The stack as local processes: Postgres from the system binaries, RabbitMQ and Kafka, each
broker as one node or as a cluster of three (one machine, a port each)."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError, alive, free_port, kill, port_is_free, wait_until
from switchyard.stack.servers import Kafka, Postgres, RabbitMQ, new_cluster_id, stop_epmd

DATABASE = "switchyard"
SIZES = (1, 3)  # one node per broker, or a cluster that outlives any one node
SHARED_PORTS = ("postgres", "epmd")  # one Postgres; every RabbitMQ node registers in one epmd
NODE_PORTS = ("amqp", "rabbit_dist", "kafka", "kafka_controller")
CLUSTER_HEAP = ("-Xms128m", "-Xmx512m")  # three JVMs on a laptop: half the single node's heap


def port_name(kind: str, node: int) -> str:
    """Node 1 keeps the single node's names (`amqp`); node n's are `amqp_n`."""
    return kind if node == 1 else f"{kind}_{node}"


@dataclass
class Ports:
    """The ports of one native stack by name, kept in its state directory (`ports.json`)."""

    by_name: dict[str, int]

    @classmethod
    def choose(cls, nodes: int, preferred: dict[str, int] | None = None) -> Ports:
        """Preferred ports where free (stable URLs for `make up`), any free port otherwise."""
        names = [*SHARED_PORTS, *(port_name(k, n) for n in range(1, nodes + 1) for k in NODE_PORTS)]
        chosen: dict[str, int] = {}
        for name in names:
            port = (preferred or {}).get(name)
            while port is None or not port_is_free(port) or _clashes(name, port, chosen):
                port = free_port()
            chosen[name] = port
        return cls(chosen)

    def __getitem__(self, name: str) -> int:
        return self.by_name[name]

    def of(self, kind: str, node: int) -> int:
        return self.by_name[port_name(kind, node)]


def _clashes(name: str, port: int, chosen: dict[str, int]) -> bool:
    """Whether `port` is taken, or would share a range with a rabbitmqctl's distribution ports
    (the ten above each node's own, RABBITMQ_CTL_DIST_PORT_MIN/MAX), which come and go."""
    taken = set(chosen.values())
    taken |= {p for n, dist in chosen.items() if n.startswith("rabbit_dist")
              for p in range(dist + 1, dist + 11)}  # fmt: skip
    own = range(port, port + 11) if name.startswith("rabbit_dist") else (port,)
    return any(p in taken for p in own)


def saved_nodes(state: Path) -> int | None:
    """How many nodes per broker the stack in `state` was made with, if it was."""
    saved = state / "ports.json"
    if not saved.exists():
        return None
    return sum(1 for name in json.loads(saved.read_text()) if name.startswith("kafka_controller"))


class NativeStack:
    """The servers under one state directory; `ports.json` there lets a later run find them.

    Server names are `postgres`, `rabbitmq` and `kafka`; in a cluster each broker's nodes are
    `rabbitmq-1` to `rabbitmq-3` and `kafka-1` to `kafka-3`.
    """

    def __init__(
        self,
        state: Path,
        *,
        ephemeral: bool = False,
        preferred: dict[str, int] | None = None,
        nodes: int | None = None,
    ):
        self.state = state.resolve()
        made = saved_nodes(self.state)
        if nodes and made and nodes != made:
            raise StackError(
                f"the stack in {self.state} has {made} node(s) per broker, not {nodes}: "
                "stop it first (`make down`)"
            )
        self.nodes = nodes or made or 1
        if self.nodes not in SIZES:
            raise StackError(f"a stack has 1 or 3 nodes per broker, not {self.nodes}")
        self.ports = Ports.choose(self.nodes, preferred)
        saved = self.state / "ports.json"
        if saved.exists():  # a port added since the state was written gets a new free one
            self.ports = Ports({**self.ports.by_name, **json.loads(saved.read_text())})
        self.ephemeral = ephemeral
        self.postgres = Postgres(
            self.state / "postgres", self.ports["postgres"], ephemeral=ephemeral
        )
        numbers = range(1, self.nodes + 1)
        self.rabbitmq = [self._rabbit(n) for n in numbers]
        self.kafka = [self._kafka(n) for n in numbers]

    def _folder(self, kind: str, node: int) -> Path:
        return self.state / self._name(kind, node)

    def _rabbit(self, node: int) -> RabbitMQ:
        p = self.ports
        cookie = self._shared_secret("erlang.cookie", lambda: secrets.token_hex(20))
        return RabbitMQ(self._folder("rabbitmq", node), p.of("amqp", node),
                        p.of("rabbit_dist", node), p["epmd"], cookie=cookie)  # fmt: skip

    def _kafka(self, node: int) -> Kafka:
        if self.nodes == 1:
            return Kafka(
                self._folder("kafka", 1), self.ports["kafka"], self.ports["kafka_controller"]
            )
        voters = {n: self.ports.of("kafka_controller", n) for n in range(1, self.nodes + 1)}
        return Kafka(self._folder("kafka", node), self.ports.of("kafka", node),
                     self.ports.of("kafka_controller", node), node_id=node, voters=voters,
                     cluster_id=self._shared_secret("kafka-cluster-id", new_cluster_id),
                     heap=CLUSTER_HEAP)  # fmt: skip

    def _shared_secret(self, name: str, make) -> str | None:
        """What every node of a cluster must share, made once and kept in the state directory."""
        if self.nodes == 1:
            return None
        path = self.state / name
        if not path.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    def _name(self, kind: str, node: int) -> str:
        return kind if self.nodes == 1 else f"{kind}-{node}"

    @property
    def servers(self) -> dict[str, Postgres | RabbitMQ | Kafka]:
        return {
            "postgres": self.postgres,
            **{self._name("rabbitmq", n): r for n, r in enumerate(self.rabbitmq, 1)},
            **{self._name("kafka", n): k for n, k in enumerate(self.kafka, 1)},
        }

    def server(self, name: str, node: int = 1) -> Postgres | RabbitMQ | Kafka:
        """One server by kind (`postgres`, `rabbitmq`, `kafka`) and node number (1 to 3)."""
        if name == "postgres":
            return self.postgres
        if name not in ("rabbitmq", "kafka") or not 1 <= node <= self.nodes:
            raise StackError(f"no {name} node {node} in a stack of {self.nodes} node(s)")
        return getattr(self, name)[node - 1]

    @property
    def endpoints(self) -> Endpoints:
        url = self.postgres.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        bootstrap = ",".join(k.bootstrap for k in self.kafka)
        nodes = tuple(r.url for r in self.rabbitmq) if self.nodes > 1 else ()
        return Endpoints("native", url, self.rabbitmq[0].url, bootstrap, str(self.state), nodes)

    def down(self) -> list[str]:
        """The servers that are not running, each asked with its own tool or pid file."""
        with ThreadPoolExecutor(len(self.servers)) as pool:
            running = list(pool.map(lambda s: s.running(), self.servers.values()))
        return [name for name, up in zip(self.servers, running, strict=True) if not up]

    def start(self, names: list[str] | None = None) -> Endpoints:
        """Start the named servers (all by default) in parallel; each returns once it answers.

        Each keeps its data from an earlier run; on failure, what this call started is stopped.
        New RabbitMQ nodes of a cluster then join the first node.
        """
        chosen = {name: self.servers[name] for name in (self.servers if names is None else names)}
        if not chosen:
            return self.endpoints
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "ports.json").write_text(json.dumps(self.ports.by_name))
        for name, server in chosen.items():
            try:  # a crashed server's last processes may hold its port for a moment
                wait_until(lambda p=server.port: port_is_free(p), 15, f"port {server.port} free")
            except StackError:
                raise StackError(
                    f"port {server.port} for {name} is in use by another program; "
                    f"stop it, or remove {self.state} so new ports are chosen"
                ) from None
        rabbits = [s for s in chosen.values() if isinstance(s, RabbitMQ)]
        # Everything starts at once (the nodes of a new Kafka cluster wait for each other's
        # votes); new RabbitMQ nodes join the first while the JVMs are still starting.
        steps = [s.start for s in chosen.values() if s not in rabbits]
        if rabbits:
            steps.append(lambda: self._start_rabbitmq(rabbits))
        try:
            with ThreadPoolExecutor(len(steps)) as pool:
                for done in [pool.submit(step) for step in steps]:
                    done.result()
        except BaseException:
            self._stop(chosen.values())
            raise
        return self.endpoints

    def _start_rabbitmq(self, nodes: list[RabbitMQ]) -> None:
        """Start the nodes in parallel; then each new one that is not yet in the first node's
        cluster joins it, one after the other (a restarted member finds its cluster again by
        itself)."""
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda r: r.start(), nodes))
        seed, *others = self.rabbitmq
        for node in others:
            # Two nodes joining at once change the cluster's schema at once, and one of them
            # was seen failing to start its database (mnesia) after the join.
            if node in nodes and seed.node not in node.cluster_nodes():
                node.join(seed)

    def stop(self) -> None:
        self._stop(self.servers.values())

    def _stop(self, servers) -> None:
        servers = list(servers)
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.stop(), servers))
        # The RabbitMQ nodes share our private epmd: it goes once none of them is left.
        if not any(alive(r.server_pid()) for r in self.rabbitmq):
            stop_epmd(self.ports["epmd"])

    def crash(self, name: str, node: int = 1) -> None:
        """SIGKILL one server's main process, as a crash would end it, and wait until it is gone."""
        process = alive(self.server(name, node).server_pid())
        if process is None:
            raise StackError(f"{self._name(name, node)} is not running")
        kill(process)

    def restart(self, name: str, node: int = 1) -> None:
        """Start one server again on its ports and data, e.g. after `crash`."""
        self.start([name if name == "postgres" else self._name(name, node)])


def crash_and_restart(endpoints: Endpoints, name: str, node: int = 1) -> None:
    """Crash one server (of a cluster: one node) of a native stack and start it again on its
    ports and data (chaos)."""
    if endpoints.backend != "native" or endpoints.state is None:
        raise StackError("only a native stack's servers can be crashed and restarted from here")
    stack = NativeStack(Path(endpoints.state))
    stack.crash(name, node)
    stack.restart(name, node)
