"""Consumer tests run the consumer's real code against this test's own database copy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db import make_engine, make_sessions

SessionsOf = Callable[[str], async_sessionmaker]


@pytest.fixture
async def sessions_of(database) -> AsyncIterator[SessionsOf]:
    """Sessions on this test's database, logged in as the named service's own role."""
    engines: list[AsyncEngine] = []

    def open_sessions(service: str) -> async_sessionmaker:
        engines.append(make_engine(database.url(service), pool_size=2))
        return make_sessions(engines[-1])

    yield open_sessions
    for engine in engines:
        await engine.dispose()
