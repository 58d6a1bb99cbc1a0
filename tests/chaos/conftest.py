"""The chaos runs' system: one instance of each service as real processes, on a native stack."""

from __future__ import annotations

import pytest

from tests.support.fleets import running_fleet


@pytest.fixture(scope="module")
def fleet(stack, template_database):
    if stack.backend != "native":
        pytest.skip(f"crashing servers mid-run needs the native stack, not {stack.backend}")
    yield from running_fleet(stack, template_database)


@pytest.fixture(scope="module")
def cluster_fleet(cluster_stack, cluster_template_database):
    """The services on the three-node brokers: every node's address in their settings."""
    yield from running_fleet(cluster_stack, cluster_template_database)
