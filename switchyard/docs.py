"""`make docs`: write what is derived from the services' wiring(); `--check` only says what drifted.

Writes `contracts/asyncapi/<service>.json` (one AsyncAPI 3.0 document per service) and the
README's message-flow table. Unit tests fail when either differs from what the wiring gives today.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.asyncapi import document
from switchyard.topology import flow_table, wirings, with_flow_table

ROOT = Path(__file__).parents[1]
ASYNCAPI = ROOT / "contracts" / "asyncapi"
README = ROOT / "README.md"


def render(doc: dict) -> str:
    """The committed form: pretty, sorted keys, a trailing newline (so diffs stay small)."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected() -> dict[Path, str]:
    """Every generated file and the text it should hold."""
    all_wirings = wirings()
    files = {ASYNCAPI / f"{w.service}.json": render(document(w)) for w in all_wirings}
    files[README] = with_flow_table(README.read_text(), flow_table(all_wirings))
    return files


def drifted(files: dict[Path, str]) -> list[str]:
    """What differs from `files`, and generated documents no service makes any more."""
    problems = [
        f"{path.relative_to(ROOT)} differs from what wiring() gives"
        for path, text in files.items()
        if not path.is_file() or path.read_text() != text
    ]
    stale = set(ASYNCAPI.glob("*.json")) - set(files)
    problems += [f"{p.relative_to(ROOT)} belongs to no service" for p in sorted(stale)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchyard.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    check = parser.parse_args(argv).check
    files = expected()
    problems = drifted(files)
    if check:
        for problem in problems:
            print(f"{problem}: run `make docs`", file=sys.stderr)
        return 1 if problems else 0
    ASYNCAPI.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    for stale in set(ASYNCAPI.glob("*.json")) - set(files):
        stale.unlink()
    for problem in problems:
        print(f"rewrote: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
