"""`make up`, `make down`, `make status` and `make logs` for the infrastructure."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from switchyard.stack.bootstrap import REPO, bootstrap
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError
from switchyard.stack.selection import choose_backend, external_endpoints

STATE = REPO / ".stack"
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
# Stable URLs across runs where these ports are free; others are chosen when they are not.
PREFERRED_PORTS = {
    "postgres": 25432,
    "amqp": 25672,
    "rabbit_dist": 25673,
    "epmd": 24369,
    "kafka": 29092,
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


def up() -> tuple[Endpoints, float, bool]:
    """Start what is not running; returns the endpoints, seconds taken and whether it was running."""
    started = time.monotonic()
    saved = _saved()
    if saved and saved.backend == "native":
        native = _native()
        if all(native.running()):
            return saved, 0.0, True
        native.stop()  # a crashed run: end its survivors before starting again
    backend = saved.backend if saved else choose_backend()
    if backend == "external":
        endpoints = external_endpoints(__import__("os").environ, for_tests=False)
        if endpoints is None:
            raise StackError(
                "STACK=external needs DATABASE_URL, AMQP_URL and KAFKA_BOOTSTRAP_SERVERS"
            )
    elif backend == "docker":
        _compose("up", "--detach", "--wait")
        endpoints = COMPOSE_ENDPOINTS
    else:
        endpoints = _native().start()
    _record(endpoints)
    bootstrap(endpoints.database_url)
    return endpoints, time.monotonic() - started, False


def down() -> str:
    """Stop exactly what `up` started, even after a crash, and forget it."""
    saved = _saved()
    backend = saved.backend if saved else ("native" if (STATE / "ports.json").exists() else None)
    if backend is None:
        return "nothing to stop"
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
        "kafka": STATE / "tansu" / "tansu.log",
    }


def current() -> Endpoints:
    saved = _saved()
    if saved is None:
        raise StackError("no stack is running here: run `make up`")
    return saved
