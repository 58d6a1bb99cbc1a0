"""Every service as real processes (one or more instances each): started, killed and restarted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from switchyard.client import StackUrls
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import free_port
from switchyard.stack.services import SERVICES, Service, ServiceProcess, service_env

# Quick retries, and short group sessions (the local broker allows them: broker.properties), so
# a killed member's partitions move and failure cases finish in seconds.
E2E_SETTINGS = {
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "OUTBOX_POLL_INTERVAL": "0.5",
    "RABBIT_RETRY_DELAYS": "[0.1, 0.2, 0.4]",
    "KAFKA_RETRY_DELAYS": "[0.05, 0.1]",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Fleet:
    """Every instance of every service, all pointed at one database copy and one name prefix."""

    state: Path
    endpoints: Endpoints
    database: str
    prefix: str
    instances: int = 1
    settings: dict[str, str] = field(default_factory=lambda: dict(E2E_SETTINGS))
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for service in SERVICES:
            for n in range(self.instances):
                port_service = Service(service.name, free_port())
                process = ServiceProcess(
                    self.state, port_service, instance=n, port=port_service.port
                )
                self.processes[process.name] = process
        self.peers = {s.name: self.processes[s.name].url for s in SERVICES}
        self.urls = StackUrls(**self.peers)

    def env(self, process: ServiceProcess) -> dict[str, str]:
        env = service_env(process.service, self.endpoints, peers=self.peers, prefix=self.prefix,
                          database=self.database)  # fmt: skip
        return {**env, **self.settings}

    def start(self, *names: str) -> None:
        """Start the named instances (all by default) in parallel; return once each is ready."""
        chosen = [self.processes[n] for n in names] if names else list(self.processes.values())
        with ThreadPoolExecutor(len(chosen)) as pool:
            list(pool.map(lambda p: p.start(self.env(p), timeout=60), chosen))

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crashed container."""
        self.processes[name].kill()

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.processes)) as pool:
            list(pool.map(lambda p: p.stop(), self.processes.values()))

    def logs(self, name: str) -> str:
        return self.processes[name].log.read_text(errors="replace")
