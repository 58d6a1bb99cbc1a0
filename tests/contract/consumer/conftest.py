"""Consumer tests run the consumer's real code against this test's own database copy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from shared.db import Database

DatabaseOf = Callable[[str], Database]


@pytest.fixture
async def database_of(database) -> AsyncIterator[DatabaseOf]:
    """A pool on this test's database, as the services run on, logged in as the named service's
    own role."""
    opened: list[Database] = []

    def open_database(service: str) -> Database:
        opened.append(Database(database.url(service), size=2))
        return opened[-1]

    yield open_database
    for pooled in opened:
        await pooled.close()
