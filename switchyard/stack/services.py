"""The three services as local uvicorn processes, each with its own role, port and log."""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from switchyard.stack.bootstrap import REPO, service_url
from switchyard.stack.daemon import Daemon
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import wait_until


@dataclass(frozen=True)
class Service:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES = (Service("users", 8001), Service("orders", 8002), Service("payments", 8003))


# How long a service keeps an idle HTTP connection open: longer than any client keeps one in its
# pool (httpx 5 s, aiohttp 15 s), so a client never sends a request on a connection the server is
# closing at that very moment (uvicorn's own 5 s races httpx's 5 s, and the request is lost).
KEEP_ALIVE_SECONDS = "75"


def service_env(
    service: Service,
    endpoints: Endpoints,
    *,
    peers: dict[str, str] | None = None,
    prefix: str = "",
    database: str | None = None,
) -> dict[str, str]:
    """What a service process reads: its own database role, the brokers, its peers' URLs."""
    peers = peers or {s.name: s.url for s in SERVICES}
    replicas, min_insync = endpoints.kafka_replication
    cluster = {
        "KAFKA_REPLICATION_FACTOR": str(replicas),
        "KAFKA_MIN_INSYNC_REPLICAS": str(min_insync),
    }
    return {
        "DATABASE_URL": service_url(endpoints.database_url, service.name, database),
        "AMQP_URL": endpoints.amqp_failover_url,  # a cluster's every node, tried in turn
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
        **(cluster if replicas > 1 else {}),  # a single broker: the services' defaults
        "BROKER_PREFIX": prefix,
        "USERS_URL": peers["users"],
        "ORDERS_URL": peers["orders"],
        "LOG_FORMAT": "json",
        "ENVIRONMENT": "development",
    }


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200 and json.load(response).get("ready") is True
    except OSError:
        return False


class ServiceProcess:
    """One uvicorn process of one service, found again through its pid file."""

    def __init__(self, state: Path, service: Service, instance: int = 0, port: int | None = None):
        self.service = service
        self.port = port or service.port + 100 * instance
        self.name = service.name if instance == 0 else f"{service.name}-{instance}"
        folder = state / "services"
        self.daemon = Daemon(self.name, folder / f"{self.name}.pid", folder / f"{self.name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.daemon.log

    def pid(self) -> int | None:
        return self.daemon.pid()

    def running(self) -> bool:
        return self.daemon.running()

    def start(self, env: dict[str, str], timeout: float = 60) -> None:
        """Start uvicorn and return once /readyz says the database and both brokers answer."""
        cmd = [sys.executable, "-m", "uvicorn", f"{self.service.name}.app:app",
               "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
               "--timeout-keep-alive", KEEP_ALIVE_SECONDS]  # fmt: skip
        self.daemon.start(
            cmd, self.port, lambda: ready(self.url), timeout=timeout, env=env, cwd=REPO
        )

    def wait(self, timeout: float = 60) -> None:
        """Until /readyz answers again, e.g. once a server that was down is back."""
        wait_until(
            lambda: ready(self.url), timeout, f"{self.name} ready on port {self.port}", self.log
        )

    def stop(self) -> None:
        self.daemon.stop(timeout=30)  # SIGTERM: uvicorn drains consumers and requests

    def kill(self) -> None:
        self.daemon.kill()
