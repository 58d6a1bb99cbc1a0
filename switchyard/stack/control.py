"""`make up`, `make down`, `make status` and `make logs` for the infrastructure."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from switchyard.stack.bootstrap import REPO, bootstrap
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.native import port_name
from switchyard.stack.processes import StackError
from switchyard.stack.selection import choose_backend, open_stack
from switchyard.stack.services import SERVICES, ServiceProcess, service_env

# Where `make up` keeps its servers' data, pids and URLs; another directory is another stack.
STATE = Path(os.environ.get("SWITCHYARD_STATE_DIR") or REPO / ".stack")
# Stable URLs across runs where these ports are free; others are chosen when they are not.
# A cluster's node n takes the same ports plus 100 * (n - 1): 25672, 25772, 25872 for AMQP.
NODE_BASE_PORTS = {"amqp": 25672, "rabbit_dist": 25673, "kafka": 29092, "kafka_controller": 29093}
PREFERRED_PORTS = {
    "postgres": 25432,
    "epmd": 24369,
    **{
        port_name(kind, node): port + 100 * (node - 1)
        for node in (1, 2, 3)
        for kind, port in NODE_BASE_PORTS.items()
    },
}


def saved_endpoints() -> Endpoints | None:
    """The endpoints of the stack `make up` last started from this state directory, if any."""
    path = STATE / "endpoints.json"
    return Endpoints.load(path) if path.exists() else None


def _record(endpoints: Endpoints) -> None:
    STATE.mkdir(exist_ok=True)
    endpoints.save(STATE / "endpoints.json")
    # `set -a; . .stack/env` exports the URLs for `make test` and for your own tools.
    (STATE / "env").write_text(
        f"DATABASE_URL={endpoints.database_url}\nAMQP_URL={endpoints.amqp_failover_url}\n"
        f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}\n"
    )


def up(nodes: int | None = None) -> tuple[Endpoints, float, list[str]]:
    """Start what is not running; returns the endpoints, seconds taken and what was started.

    `nodes` 3 starts cluster mode (native only); by default a running stack keeps its size.
    """
    began = time.monotonic()
    saved = saved_endpoints()
    if saved:
        backend = saved.backend
    else:
        backend = "native" if (nodes or 1) > 1 and not os.environ.get("STACK") else choose_backend()
    stack = open_stack(backend, STATE, preferred=PREFERRED_PORTS, nodes=nodes)
    endpoints, started = stack.start()
    if saved and not started and all(p.running() for p in service_processes()):
        return saved, 0.0, []
    _record(endpoints)
    bootstrap(endpoints.database_url)
    if stack.local_services:
        started += start_services(endpoints)
    return endpoints, time.monotonic() - began, started


def service_processes() -> list[ServiceProcess]:
    """The services this checkout has, as local processes (none when compose runs them)."""
    saved = saved_endpoints()
    if saved is not None and saved.backend == "docker":
        return []
    return [
        ServiceProcess(STATE, s)
        for s in SERVICES
        if (REPO / "services" / s.name / "app.py").exists()
    ]


def start_services(endpoints: Endpoints) -> list[str]:
    """Start every service not yet running and wait until each /readyz answers; their names."""
    env_file, example = REPO / ".env", REPO / ".env.example"
    if not env_file.exists() and example.exists():
        shutil.copy(example, env_file)  # the documented development secrets
    processes = service_processes()
    started = [process for process in processes if not process.running()]
    with ThreadPoolExecutor(len(processes) or 1) as pool:
        list(pool.map(lambda p: p.start(service_env(p.service, endpoints)), started))
    for process in processes:  # those that ran wait too: back to ready after an outage
        process.wait()
    return [process.name for process in started]


def down() -> str:
    """Stop exactly what `up` started, even after a crash, and forget it."""
    saved = saved_endpoints()
    backend = saved.backend if saved else ("native" if (STATE / "ports.json").exists() else None)
    if backend is None:
        return "nothing to stop"
    for process in service_processes():
        process.stop()
    open_stack(backend, STATE).stop()
    shutil.rmtree(STATE, ignore_errors=True)
    return f"stopped the {backend} stack"


def logs() -> dict[str, Path]:
    """The log file of each local server (of a cluster: `rabbitmq-2`, `kafka-3`, ...)."""
    folders = {path.name: path for path in STATE.glob("rabbitmq*") if path.is_dir()}
    kafka = {path.name: path / "kafka.log" for path in STATE.glob("kafka*") if path.is_dir()}
    return {
        "postgres": STATE / "postgres" / "postgres.log",
        **{
            name: next((path / "log").glob("*.log"), path / "log") for name, path in folders.items()
        },
        **kafka,
        **{p.name: p.log for p in service_processes()},
    }


def current() -> Endpoints:
    saved = saved_endpoints()
    if saved is None:
        raise StackError("no stack is running here: run `make up`")
    return saved
