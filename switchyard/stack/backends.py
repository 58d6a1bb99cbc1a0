"""Where the servers come from, each behind the same verbs: start what is down, and stop."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from switchyard.stack.bootstrap import REPO
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.native import NativeStack
from switchyard.stack.processes import StackError

URL_VARIABLES = ("DATABASE_URL", "AMQP_URL", "KAFKA_BOOTSTRAP_SERVERS")
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
COMPOSE_ENDPOINTS = Endpoints(
    "docker",
    "postgresql://switchyard:switchyard@127.0.0.1:5432/switchyard",
    "amqp://guest:guest@127.0.0.1:5672/",
    "127.0.0.1:9092",
)


class Stack(Protocol):
    name: str
    local_services: bool  # whether the services run as local processes beside these servers

    def start(self) -> tuple[Endpoints, list[str]]:
        """Start what is not running; the endpoints, and the names of what was started."""
        ...

    def stop(self) -> None: ...


def external_endpoints(env: Mapping[str, str], *, for_tests: bool) -> Endpoints | None:
    """URLs from the environment; tests look at TEST_-prefixed variables first."""
    for prefix in ("TEST_", "") if for_tests else ("",):
        values = [env.get(prefix + name) for name in URL_VARIABLES]
        if all(values):
            database, amqp, kafka = values
            # A cluster's AMQP_URL lists every node, comma-separated, as the services take it.
            nodes = tuple(amqp.split(",")) if "," in amqp else ()
            return Endpoints("external", database, amqp.split(",")[0], kafka, amqp_nodes=nodes)
    return None


class External:
    """Servers someone else runs: used as they are, never started or stopped here."""

    name, local_services = "external", True

    def __init__(self, env: Mapping[str, str], *, for_tests: bool):
        self.env, self.for_tests = env, for_tests

    def start(self) -> tuple[Endpoints, list[str]]:
        endpoints = external_endpoints(self.env, for_tests=self.for_tests)
        if endpoints is None:
            prefix = "[TEST_]" if self.for_tests else ""
            names = ", ".join(prefix + name for name in URL_VARIABLES)
            raise StackError(f"STACK=external needs {names} in the environment")
        return endpoints, []

    def stop(self) -> None:
        pass


class Compose:
    """`make up` with Docker: compose runs the servers and the services, healthy when it returns."""

    name, local_services = "docker", False

    def _compose(self, *args: str) -> None:
        if shutil.which("docker") is None:
            raise StackError("docker is not installed; run with STACK=native")
        result = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), *args], check=False)
        if result.returncode != 0:
            raise StackError(f"docker compose {' '.join(args)} failed (exit {result.returncode})")

    def start(self) -> tuple[Endpoints, list[str]]:
        self._compose("up", "--detach", "--wait")
        return COMPOSE_ENDPOINTS, ["the compose project"]

    def stop(self) -> None:
        self._compose("down", "--volumes")


class Containers:
    """A test session with Docker: the same images through testcontainers, removed at stop."""

    name, local_services = "docker", True

    def __init__(self) -> None:
        self._running = ExitStack()

    def start(self) -> tuple[Endpoints, list[str]]:
        from switchyard.stack.docker import containers

        endpoints = self._running.enter_context(containers())
        return endpoints, ["postgres", "rabbitmq", "kafka"]

    def stop(self) -> None:
        self._running.close()


class Native:
    """Local processes under a state directory; a later run finds them there."""

    name, local_services = "native", True

    def __init__(
        self,
        state: Path,
        *,
        ephemeral: bool,
        preferred: dict[str, int] | None = None,
        nodes: int | None = None,
    ):
        self.servers = NativeStack(state, ephemeral=ephemeral, preferred=preferred, nodes=nodes)

    def start(self) -> tuple[Endpoints, list[str]]:
        # Only what is down starts: a server that died comes back on its data, while the
        # others carry on (the services reconnect by themselves).
        down = self.servers.down()
        return self.servers.start(down), down

    def stop(self) -> None:
        self.servers.stop()
