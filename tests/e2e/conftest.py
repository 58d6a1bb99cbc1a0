"""A whole switchyard (three services as real processes) for the end-to-end tests."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from switchyard.client import SwitchyardClient
from switchyard.stack.bootstrap import create_database, drop_database
from switchyard.stack.fleet import Fleet


def _system(stack, template_database: str, instances: int = 1):
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    create_database(stack.database_url, name, template=template_database)
    state = Path(tempfile.mkdtemp(prefix="switchyard-e2e-"))
    system = Fleet(state, stack, name, f"{name}.", instances=instances)
    try:
        system.start()
        yield system
    finally:
        system.stop()
        drop_database(stack.database_url, name)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def system(stack, template_database):
    """One instance of each service, shared by the tests of a module (they use their own users)."""
    yield from _system(stack, template_database)


@pytest.fixture
async def client(system):
    shop = SwitchyardClient(system.urls)
    yield shop
    await shop.aclose()
