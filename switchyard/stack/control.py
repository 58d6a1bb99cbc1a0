"""`make up`, `make down`, `make status` and `make logs` for the infrastructure."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from switchyard.stack.bootstrap import REPO, bootstrap
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError
from switchyard.stack.selection import choose_backend, open_stack
from switchyard.stack.services import SERVICES, ServiceProcess, service_env

# Where `make up` keeps its servers' data, pids and URLs; another directory is another stack.
STATE = Path(os.environ.get("SWITCHYARD_STATE_DIR") or REPO / ".stack")
# Stable URLs across runs where these ports are free; others are chosen when they are not.
PREFERRED_PORTS = {
    "postgres": 25432,
    "amqp": 25672,
    "rabbit_dist": 25673,
    "epmd": 24369,
    "kafka": 29092,
    "kafka_controller": 29093,
}


def _saved() -> Endpoints | None:
    path = STATE / "endpoints.json"
    return Endpoints.load(path) if path.exists() else None


def _record(endpoints: Endpoints) -> None:
    STATE.mkdir(exist_ok=True)
    endpoints.save(STATE / "endpoints.json")
    # `set -a; . .stack/env` exports the URLs for `make test` and for your own tools.
    (STATE / "env").write_text(
        f"DATABASE_URL={endpoints.database_url}\nAMQP_URL={endpoints.amqp_url}\n"
        f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}\n"
    )


def up() -> tuple[Endpoints, float, list[str]]:
    """Start what is not running; returns the endpoints, seconds taken and what was started."""
    began = time.monotonic()
    saved = _saved()
    stack = open_stack(
        saved.backend if saved else choose_backend(), STATE, preferred=PREFERRED_PORTS
    )
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
    saved = _saved()
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
    saved = _saved()
    backend = saved.backend if saved else ("native" if (STATE / "ports.json").exists() else None)
    if backend is None:
        return "nothing to stop"
    for process in service_processes():
        process.stop()
    open_stack(backend, STATE).stop()
    shutil.rmtree(STATE, ignore_errors=True)
    return f"stopped the {backend} stack"


def logs() -> dict[str, Path]:
    """The log file of each local server."""
    return {
        "postgres": STATE / "postgres" / "postgres.log",
        "rabbitmq": next((STATE / "rabbitmq" / "log").glob("*.log"), STATE / "rabbitmq" / "log"),
        "kafka": STATE / "kafka" / "kafka.log",
        **{p.name: p.log for p in service_processes()},
    }


def current() -> Endpoints:
    saved = _saved()
    if saved is None:
        raise StackError("no stack is running here: run `make up`")
    return saved
