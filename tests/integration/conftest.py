"""Fixtures the integration tests of the shared library have in common."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine


@pytest.fixture
async def engine(database) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's own database copy, as its owner."""
    engine = make_engine(database.admin_url)
    yield engine
    await engine.dispose()
