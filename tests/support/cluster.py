"""Cluster mode for a test session: three nodes each of RabbitMQ and Kafka, one Postgres.

The fixtures are registered in tests/conftest.py, so any test directory can ask for them:
`cluster_stack` (the Endpoints; a Fleet started on them gets every node), `cluster_servers`
(the processes, to crash and restart one node) and `cluster_template_database`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.stack.bootstrap import fresh_template
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.native import NativeStack
from switchyard.stack.selection import test_stack

TEMPLATE_DATABASE = "switchyard_template"  # on its own Postgres: the same name clashes with nothing


@pytest.fixture(scope="session")
def cluster_stack() -> Iterator[Endpoints]:
    """A three-node cluster of each broker beside one Postgres, in its own state directory,
    started once for the session and stopped after it."""
    forced = os.environ.get("STACK", "native").strip().lower() or "native"
    if forced != "native":
        pytest.skip(f"cluster mode runs the native stack's processes, and STACK={forced}")
    # Not under pytest's tmp dir: the servers run as the postgres and rabbitmq users.
    state = Path(tempfile.mkdtemp(prefix="switchyard-test-cluster-"))
    state.chmod(0o755)
    try:
        with test_stack(state, nodes=3) as endpoints:
            yield endpoints
    finally:
        if not os.environ.get("KEEP_TEST_STACK"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def cluster_servers(cluster_stack: Endpoints) -> Iterator[NativeStack]:
    """The cluster's processes, for a test to crash and restart nodes of; whatever it left
    down is started again afterwards, so a failed test does not fail the next."""
    native = NativeStack(Path(cluster_stack.state or ""))
    yield native
    native.start(native.down())


@pytest.fixture(scope="session")
def cluster_template_database(cluster_stack: Endpoints) -> str:
    """The migrated database every test database on the cluster's Postgres is copied from."""
    return fresh_template(cluster_stack.database_url, TEMPLATE_DATABASE)
