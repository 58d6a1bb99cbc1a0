"""`make up`, `make down`, `make status` and `make logs` for the infrastructure."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from switchyard.stack.bootstrap import REPO, bootstrap
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError
from switchyard.stack.selection import choose_backend, external_endpoints
from switchyard.stack.services import SERVICES, ServiceProcess, service_env

# Where `make up` keeps its servers' data, pids and URLs; another directory is another stack.
STATE = Path(os.environ.get("SWITCHYARD_STATE_DIR") or REPO / ".stack")
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
# Stable URLs across runs where these ports are free; others are chosen when they are not.
PREFERRED_PORTS = {
    "postgres": 25432,
    "amqp": 25672,
    "rabbit_dist": 25673,
    "epmd": 24369,
    "kafka": 29092,
    "kafka_controller": 29093,
}
COMPOSE_ENDPOINTS = Endpoints(
    "docker",
    "postgresql://switchyard:switchyard@127.0.0.1:5432/switchyard",
    "amqp://guest:guest@127.0.0.1:5672/",
    "127.0.0.1:9092",
)


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


def _native():
    from switchyard.stack.native import NativeStack

    return NativeStack(STATE, preferred=PREFERRED_PORTS)


def _compose(*args: str) -> None:
    if shutil.which("docker") is None:
        raise StackError("docker is not installed; run with STACK=native")
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), *args], check=False)
    if result.returncode != 0:
        raise StackError(f"docker compose {' '.join(args)} failed (exit {result.returncode})")


def up() -> tuple[Endpoints, float, list[str]]:
    """Start what is not running; returns the endpoints, seconds taken and what was started."""
    began = time.monotonic()
    saved = _saved()
    backend = saved.backend if saved else choose_backend()
    if backend == "native":
        native = _native()
        down = native.down()
        if saved and not down and all(p.running() for p in service_processes()):
            return saved, 0.0, []
        # Only what is down starts: a server that died comes back on its data, while the others
        # and the services carry on (they reconnect by themselves).
        endpoints = native.start(down)
        started = down
    elif backend == "docker":
        _compose("up", "--detach", "--wait")
        endpoints, started = COMPOSE_ENDPOINTS, ["the compose project"]
    else:
        endpoints = external_endpoints(os.environ, for_tests=False)
        if endpoints is None:
            raise StackError(
                "STACK=external needs DATABASE_URL, AMQP_URL and KAFKA_BOOTSTRAP_SERVERS"
            )
        started = []
    _record(endpoints)
    bootstrap(endpoints.database_url)
    if backend != "docker":  # compose runs the services itself
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
    marker = str(STATE.resolve())
    processes = service_processes()
    started = [process for process in processes if not process.running()]
    for process in started:
        process.start(service_env(process.service, endpoints), marker)
    for process in processes:  # those that ran on wait too: back to ready after an outage
        process.wait()
    return [process.name for process in started]


def down() -> str:
    """Stop exactly what `up` started, even after a crash, and forget it."""
    saved = _saved()
    backend = saved.backend if saved else ("native" if (STATE / "ports.json").exists() else None)
    if backend is None:
        return "nothing to stop"
    marker = str(STATE.resolve())
    for process in service_processes():
        process.stop(marker)
    if backend == "docker":
        _compose("down", "--volumes")
    elif backend == "native":
        _native().stop()
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
