"""The one place that decides where the servers come from: environment, Docker, or local processes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError

BACKENDS = ("external", "docker", "native")
URL_VARIABLES = ("DATABASE_URL", "AMQP_URL", "KAFKA_BOOTSTRAP_SERVERS")


def external_endpoints(env: Mapping[str, str], *, for_tests: bool) -> Endpoints | None:
    """URLs from the environment; tests look at TEST_-prefixed variables first."""
    for prefix in ("TEST_", "") if for_tests else ("",):
        values = [env.get(prefix + name) for name in URL_VARIABLES]
        if all(values):
            database, amqp, kafka = values
            return Endpoints("external", database, amqp, kafka)
    return None


def choose_backend(
    env: Mapping[str, str] = os.environ, *, for_tests: bool = False, docker=None
) -> str:
    """`STACK` if set; else external URLs, then a Docker engine, then local processes."""
    forced = env.get("STACK", "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise StackError(f"STACK={forced!r} is not one of {', '.join(BACKENDS)}")
        return forced
    if external_endpoints(env, for_tests=for_tests):
        return "external"
    if docker is None:
        from switchyard.stack.docker import docker_answers as docker
    return "docker" if docker() else "native"


@contextmanager
def test_stack(state: Path, env: Mapping[str, str] = os.environ) -> Iterator[Endpoints]:
    """Servers for one test session, bootstrapped, and stopped afterwards if we started them."""
    from switchyard.stack.bootstrap import bootstrap

    backend = choose_backend(env, for_tests=True)
    if backend == "external":
        endpoints = external_endpoints(env, for_tests=True)
        if endpoints is None:
            names = ", ".join(f"[TEST_]{name}" for name in URL_VARIABLES)
            raise StackError(f"STACK=external needs {names} in the environment")
        bootstrap(endpoints.database_url)
        yield endpoints
    elif backend == "docker":
        from switchyard.stack.docker import containers

        with containers() as endpoints:
            bootstrap(endpoints.database_url)
            yield endpoints
    else:
        from switchyard.stack.native import NativeStack

        native = NativeStack(state, ephemeral=True)
        endpoints = native.start()
        try:
            bootstrap(endpoints.database_url)
            yield endpoints
        finally:
            native.stop()
