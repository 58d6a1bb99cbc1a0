"""`make contracts`: consumer tests must write exactly the committed pacts; providers must keep them.

One pytest session runs every contract test: the consumer tests write into a fresh folder
(`contracts/.generated/pacts`), the provider tests verify the committed files and leave their
counts in `contracts/.generated/results`. Then the written pacts are compared with the committed
ones and every committed interaction must have been verified. `--update` (`make pacts`) runs only
the consumer tests and replaces the committed files with what they wrote.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.contract.pacts import COMMITTED, ROOT, UPDATE_HINT, diff, load, normalised

GENERATED = ROOT / "contracts" / ".generated"


def run_tests(paths: list[str], pact_dir: Path, results: Path) -> bool:
    env = os.environ | {
        "PACT_DIR": str(pact_dir),
        "PACT_RESULTS_DIR": str(results),
        "PACT_DO_NOT_TRACK": "true",
    }
    command = [sys.executable, "-m", "pytest", "-m", "contract", "-p", "no:cacheprovider", *paths]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode == 0


def compare(written: Path) -> list[str]:
    """Differences between the written and the committed pacts, as readable text."""
    problems = []
    names = {p.name for p in written.glob("*.json")} | {p.name for p in COMMITTED.glob("*.json")}
    for name in sorted(names):
        fresh, kept = written / name, COMMITTED / name
        if not kept.exists():
            problems.append(f"{name}: written by the consumer tests but not committed")
        elif not fresh.exists():
            problems.append(f"{name}: committed but no consumer test writes it any more")
        elif (before := normalised(load(kept))) != (after := normalised(load(fresh))):
            text = diff(before, after, f"committed/{name}", f"written/{name}")
            problems.append(f"{name}: differs from what the consumer tests write\n{text}")
    return problems


def coverage(results: Path) -> tuple[list[str], list[str]]:
    """One line per pact (interactions, verified), and every interaction left unverified."""
    verified: set[tuple[str, str, str]] = set()
    for summary in map(load, results.glob("*.json")):
        verified |= {(c, summary["provider"], d) for c, d in summary["verified"]}
    lines, problems = [], []
    for path in sorted(COMMITTED.glob("*.json")):
        pact = load(path)
        consumer, provider = pact["consumer"]["name"], pact["provider"]["name"]
        descriptions = [i["description"] for i in pact["interactions"]]
        done = [d for d in descriptions if (consumer, provider, d) in verified]
        lines.append(f"  {consumer:>8} -> {provider:<8} {len(descriptions):>3} {len(done):>9}")
        if not done:
            problems.append(f"{path.name}: no interaction verified")
        problems += [f"{path.name}: not verified: {d!r}" for d in descriptions if d not in done]
    return lines, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite contracts/pacts")
    update = parser.parse_args().update
    started = time.monotonic()
    shutil.rmtree(GENERATED, ignore_errors=True)
    written, results = GENERATED / "pacts", GENERATED / "results"
    written.mkdir(parents=True)
    results.mkdir()

    paths = ["tests/contract/consumer"] if update else ["tests/contract"]
    problems = [] if run_tests(paths, written, results) else ["contract tests failed (above)"]
    if update:
        if not problems:
            for old in COMMITTED.glob("*.json"):
                old.unlink()
            for new in written.glob("*.json"):
                # Stable text: reviewers read pact changes in diffs.
                (COMMITTED / new.name).write_text(normalised(load(new)))
            print("contracts/pacts rewritten; verify the providers with `make contracts`")
    else:
        problems += compare(written)
        lines, unverified = coverage(results)
        problems += unverified
        print("\n  consumer -> provider  interactions  verified")
        print("\n".join(lines))
    print(f"\n{time.monotonic() - started:.1f}s")
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    if problems and not update:
        print(f"If the consumer changed on purpose: {UPDATE_HINT}.", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
