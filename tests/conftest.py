"""Session-wide servers and per-test isolation: every test gets its own database and names."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchyard.stack.bootstrap import (
    create_database,
    drop_database,
    fresh_template,
    service_url,
    with_database,
)
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.native import NativeStack
from switchyard.stack.selection import test_stack
from tests.support.cluster import cluster_servers, cluster_stack, cluster_template_database
from tests.support.eventually import eventually

TEMPLATE_DATABASE = "switchyard_template"

# Fixtures defined elsewhere, offered to every test directory from here.
__all__ = ["cluster_servers", "cluster_stack", "cluster_template_database", "eventually"]


@dataclass(frozen=True)
class TestDatabase:
    """A private copy of the migrated database: schemas, roles' grants and tables included."""

    __test__ = False
    name: str
    admin_url: str  # superuser, for set-up and inspection

    def url(self, service: str) -> str:
        """The URL the given service logs in with (its own role)."""
        return service_url(self.admin_url, service)


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    """Real Postgres, RabbitMQ and Kafka-protocol servers for the whole session."""
    # Not under pytest's tmp dir: its parent is private to root, and the servers run as
    # the postgres and rabbitmq users.
    state = Path(tempfile.mkdtemp(prefix="switchyard-test-stack-"))
    state.chmod(0o755)
    try:
        with test_stack(state) as endpoints:
            yield endpoints
    finally:
        if not os.environ.get("KEEP_TEST_STACK"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def servers(stack: Endpoints) -> Iterator[NativeStack]:
    """The session's servers as processes this test may crash and restart (native stack only).

    Whatever the test left down is started again, so a failed test does not fail the next ones.
    """
    if stack.backend != "native" or stack.state is None:
        pytest.skip(f"crashing a server needs the native stack's processes, not {stack.backend}")
    native = NativeStack(Path(stack.state))
    yield native
    native.start(native.down())


@pytest.fixture(scope="session")
def template_database(stack: Endpoints) -> str:
    """The bootstrapped, migrated database every test database is copied from."""
    return fresh_template(stack.database_url, TEMPLATE_DATABASE)


@pytest.fixture
def database(stack: Endpoints, template_database: str) -> Iterator[TestDatabase]:
    """A fresh database for this test, copied from the template, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(stack.database_url, name, template=template_database)
    try:
        yield TestDatabase(name, with_database(stack.database_url, name))
    finally:
        drop_database(stack.database_url, name)


@pytest.fixture
def names() -> str:
    """A prefix unique to this test for queues, exchanges, topics and consumer groups."""
    return f"t{uuid.uuid4().hex[:8]}."
