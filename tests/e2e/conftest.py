"""A whole switchyard (three services as real processes) for the end-to-end tests."""

from __future__ import annotations

import pytest

from switchyard.client import SwitchyardClient
from tests.support.fleets import running_fleet


@pytest.fixture(scope="module")
def system(stack, template_database):
    """One instance of each service, shared by the tests of a module (they use their own users)."""
    yield from running_fleet(stack, template_database)


@pytest.fixture
async def client(system):
    shop = SwitchyardClient(system.urls)
    yield shop
    await shop.aclose()
