"""The committed pacts are well-formed, and every provider they name has a verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.pacts import COMMITTED, load

pytestmark = pytest.mark.contract

PROVIDER_TESTS = Path(__file__).parent / "provider"
PACTS = sorted(COMMITTED.glob("*.json"))


def test_there_are_pacts():
    assert PACTS, f"no pact files in {COMMITTED}"


@pytest.mark.parametrize("path", PACTS, ids=lambda p: p.name)
def test_a_pact_is_named_after_its_pair_and_verified_by_its_provider(path: Path):
    pact = load(path)
    consumer, provider = pact["consumer"]["name"], pact["provider"]["name"]
    assert path.name == f"{consumer}-{provider}.json"
    assert pact["metadata"]["pactSpecification"]["version"] == "4.0"
    assert pact["interactions"], f"{path.name} holds no interaction"
    # A pact nobody verifies would pass by verifying nothing.
    assert (PROVIDER_TESTS / f"test_{provider}.py").exists(), f"no verification of {provider}"
