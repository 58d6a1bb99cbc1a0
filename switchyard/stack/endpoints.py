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
        """How many nodes each broker has: 1, or 3 in cluster mode."""
        return max(1, len(self.amqp_nodes))

    @property
    def amqp_failover_url(self) -> str:
        """AMQP_URL for a service: every node's URL, comma-separated, tried in turn."""
        return ",".join(self.amqp_nodes) or self.amqp_url

    @property
    def kafka_replication(self) -> tuple[int, int]:
        """Each topic's replicas and the in-sync replicas an acks=all write needs."""
        return (3, 2) if self.nodes >= 3 else (1, 1)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        saved = json.loads(path.read_text())
        return cls(**{**saved, "amqp_nodes": tuple(saved.get("amqp_nodes", ()))})
