"""Consumer tests run the consumer's real code against this test's own database copy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine

EngineOf = Callable[[str], AsyncEngine]


@pytest.fixture
async def engine_of(database) -> AsyncIterator[EngineOf]:
    """An engine on this test's database, logged in as the named service's own role."""
    engines: list[AsyncEngine] = []

    def open_engine(service: str) -> AsyncEngine:
        engines.append(make_engine(database.url(service), pool_size=2))
        return engines[-1]

    yield open_engine
    for engine in engines:
        await engine.dispose()
