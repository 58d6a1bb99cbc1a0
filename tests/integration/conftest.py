"""Fixtures the integration tests of the shared library have in common."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
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
def transactions_left_open(engine) -> Callable[[], Awaitable[int]]:
    """How many of this database's backends sit idle inside a transaction, counted when called."""

    async def count() -> int:
        async with engine.connect() as conn:
            return await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle in transaction'"
                )
            )

    return count


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
