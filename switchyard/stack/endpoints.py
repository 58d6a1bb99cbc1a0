"""The three servers a switchyard stack needs, as URLs a client can use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    """Connection URLs of one running stack; `database_url` logs in as the cluster's superuser."""

    backend: str
    database_url: str  # postgresql://admin:pw@host:port/switchyard
    amqp_url: str  # amqp://guest:guest@host:port/ (a cluster's first node)
    kafka_bootstrap: str  # host:port, comma-separated: every broker of a cluster
    state: str | None = None  # native only: the directory the servers keep their state in
    amqp_nodes: tuple[str, ...] = ()  # a cluster's every node, amqp_url first; empty for one

    @property
    def nodes(self) -> int:
        """How many RabbitMQ nodes: 1, or 3 in cluster mode (Kafka's are counted apart)."""
        return max(1, len(self.amqp_nodes))

    @property
    def kafka_brokers(self) -> int:
        """How many Kafka brokers the bootstrap list names."""
        return max(1, len([b for b in self.kafka_bootstrap.split(",") if b.strip()]))

    @property
    def amqp_failover_url(self) -> str:
        """AMQP_URL for a service: every node's URL, comma-separated, tried in turn."""
        return ",".join(self.amqp_nodes) or self.amqp_url

    @property
    def kafka_replication(self) -> tuple[int, int]:
        """Each topic's replicas and the in-sync replicas an acks=all write needs.

        From Kafka's own brokers, not RabbitMQ's nodes: an external stack may have three
        brokers behind one AMQP URL. One broker may be down and writes still go on.
        """
        replicas = min(3, self.kafka_brokers)
        return replicas, max(1, replicas - 1)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        saved = json.loads(path.read_text())
        return cls(**{**saved, "amqp_nodes": tuple(saved.get("amqp_nodes", ()))})
