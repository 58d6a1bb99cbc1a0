"""Fixtures the integration tests of the shared library have in common."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database, make_engine
from tests.support.proxy import TcpProxy


@pytest.fixture
async def engine(database) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's own database copy, as its owner."""
    engine = make_engine(database.admin_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def service_database(database) -> AsyncIterator[Database]:
    """A pool as the services run on (shared.db.Database), on this test's own database copy."""
    pooled = Database(database.admin_url)
    yield pooled
    await pooled.close()


@pytest.fixture
async def database_proxy(database) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to this test's Postgres: a service started on
    `database_proxy.carrying(database.url(name))` reaches its database only through it."""
    address = database.admin_url.split("@", 1)[1].split("/", 1)[0]
    async with TcpProxy.to(address) as proxy:
        yield proxy
