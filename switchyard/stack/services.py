"""The three services as local uvicorn processes, each with its own role, port and log."""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from switchyard.stack.bootstrap import REPO, service_url
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import (
    StackError,
    pid_alive,
    port_is_free,
    spawn,
    terminate,
    wait_until,
)


@dataclass(frozen=True)
class Service:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES = (Service("users", 8001), Service("orders", 8002), Service("payments", 8003))


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
    return {
        "DATABASE_URL": service_url(endpoints.database_url, service.name, database),
        "AMQP_URL": endpoints.amqp_url,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
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
        self.dir = state / "services"
        self.log, self.pidfile = self.dir / f"{self.name}.log", self.dir / f"{self.name}.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return bool(pid and pid_alive(pid))

    def start(self, env: dict[str, str], marker: str) -> None:
        if not port_is_free(self.port):
            raise StackError(f"port {self.port} for {self.name} is in use by another program")
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "uvicorn", f"{self.service.name}.app:app",
               "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]  # fmt: skip
        pid = spawn(cmd, self.log, env={**env, "SWITCHYARD_STACK": marker}, cwd=REPO)
        self.pidfile.write_text(str(pid))

    def wait(self, timeout: float = 60) -> None:
        def up() -> bool:
            if not self.running():
                raise StackError(f"{self.name} exited at start; see {self.log}")
            return ready(self.url)

        wait_until(up, timeout, f"{self.name} /readyz on port {self.port}", self.log)

    def stop(self, marker: str) -> None:
        pid = self.pid()
        if pid:
            terminate(pid, marker, timeout=30)  # SIGTERM: uvicorn drains consumers and requests
        self.pidfile.unlink(missing_ok=True)
