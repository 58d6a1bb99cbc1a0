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
    amqp_url: str  # amqp://guest:guest@host:port/
    kafka_bootstrap: str  # host:port
    state: str | None = None  # native only: the directory the servers keep their state in

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        return cls(**json.loads(path.read_text()))
