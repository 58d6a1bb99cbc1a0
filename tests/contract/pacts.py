"""Where pact files live, and how a freshly written pact is compared with the committed one."""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pact import Pact

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "contracts" / "pacts"
UPDATE_HINT = "run `make pacts` to rewrite contracts/pacts from the consumer tests, then commit"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def interaction_key(interaction: dict[str, Any]) -> str:
    """An interaction's identity within its pact: description plus provider states."""
    states = json.dumps(interaction.get("providerStates", []), sort_keys=True)
    return f"{interaction['description']} {states}"


def normalised(pact: dict[str, Any]) -> str:
    """The pact as stable text: keys sorted, interactions in a fixed order."""
    pact = dict(pact, interactions=sorted(pact.get("interactions", []), key=interaction_key))
    return json.dumps(pact, indent=2, sort_keys=True) + "\n"


def diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True),
        actual.splitlines(keepends=True),
        fromfile=expected_name,
        tofile=actual_name,
    )
    return "".join(lines)


def publish(pact: Pact) -> None:
    """Write a consumer test's pact.

    With `PACT_DIR` set (`make contracts`, `make pacts`) the file goes there, merged with the
    other tests' interactions, and the whole folder is compared afterwards. Without it (`make
    test`) the committed files are left alone: the interactions go to a private folder and each
    must equal its committed twin, so a consumer that drifted from contracts/pacts fails here.
    """
    if target := os.environ.get("PACT_DIR"):
        pact.write_file(target)
        return
    name = f"{pact.consumer}-{pact.provider}.json"
    with tempfile.TemporaryDirectory(prefix="pact-") as scratch:
        pact.write_file(scratch, overwrite=True)
        written = load(Path(scratch) / name)
    committed_path = COMMITTED / name
    assert committed_path.exists(), f"no committed pact {name}: {UPDATE_HINT}"
    committed = {interaction_key(i): i for i in load(committed_path)["interactions"]}
    for interaction in written["interactions"]:
        key = interaction_key(interaction)
        assert key in committed, f"{name}: {key!r} is not in the committed pact: {UPDATE_HINT}"
        before = json.dumps(committed[key], indent=2, sort_keys=True) + "\n"
        after = json.dumps(interaction, indent=2, sort_keys=True) + "\n"
        assert before == after, (
            f"{name}: {interaction['description']!r} differs from the committed pact "
            f"({UPDATE_HINT}):\n{diff(before, after, 'committed', 'written by this test')}"
        )
