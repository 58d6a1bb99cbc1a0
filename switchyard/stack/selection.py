"""The one place that decides where the servers come from: environment, Docker, or local processes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from switchyard.stack.backends import (
    Compose,
    Containers,
    External,
    Native,
    Stack,
    external_endpoints,
)
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.processes import StackError

BACKENDS = ("external", "docker", "native")


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


def open_stack(
    backend: str,
    state: Path,
    *,
    for_tests: bool = False,
    env: Mapping[str, str] = os.environ,
    preferred: dict[str, int] | None = None,
    nodes: int | None = None,
) -> Stack:
    """The stack of `backend`: a test session's (throwaway data, testcontainers with Docker)
    or `make up`'s (kept in `state`, compose with Docker). `nodes` 3 is cluster mode, which
    only the native stack runs."""
    if (nodes or 1) > 1 and backend != "native":
        raise StackError(f"cluster mode runs on the native stack (STACK=native), not {backend}")
    if backend == "external":
        return External(env, for_tests=for_tests)
    if backend == "docker":
        return Containers() if for_tests else Compose()
    if backend == "native":
        return Native(state, ephemeral=for_tests, preferred=preferred, nodes=nodes)
    raise StackError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")


@contextmanager
def test_stack(
    state: Path, env: Mapping[str, str] = os.environ, *, nodes: int = 1, bootstrap: bool = True
) -> Iterator[Endpoints]:
    """Servers for one test session, bootstrapped (unless `bootstrap` is False: a caller that
    makes a database of its own), and stopped afterwards if we started them.

    A cluster (`nodes` 3) is always the native stack's own processes.
    """
    from switchyard.stack import bootstrap as setup

    backend = "native" if nodes > 1 else choose_backend(env, for_tests=True)
    stack = open_stack(backend, state, for_tests=True, env=env, nodes=nodes)
    try:
        endpoints, _ = stack.start()
        if bootstrap:
            setup.bootstrap(endpoints.database_url)
        yield endpoints
    finally:
        stack.stop()
