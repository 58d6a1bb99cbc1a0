"""Verifying one provider against the committed pacts, with set-up and producers on the test's loop.

pact's verifier blocks, and calls state set-ups and message producers from threads of its own,
so it runs in a worker thread while the event loop stays free to serve the provider's app and
to run the async set-ups and producers handed to it from those threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pact import Verifier
from pact.types import Message

from tests.contract.pacts import COMMITTED, load

StateSetUp = Callable[[dict[str, Any]], Awaitable[None]]
Producer = Callable[[], Awaitable[Message]]
TIMEOUT = 30.0  # seconds for one set-up or one message


def pacts_for(provider: str, folder: Path = COMMITTED) -> list[Path]:
    """Every pact in `folder` that names `provider`, whichever consumer wrote it."""
    return sorted(p for p in folder.glob("*.json") if load(p)["provider"]["name"] == provider)


def interactions_in(pacts: list[Path]) -> list[tuple[str, str]]:
    return [
        (load(p)["consumer"]["name"], i["description"])
        for p in pacts
        for i in load(p)["interactions"]
    ]


@dataclass
class Verification:
    """One verifier run: pact's own report, plus what set-ups and producers could not do."""

    provider: str
    pacts: list[Path]
    verifier: Verifier
    problems: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.verifier.results.get("interactionResults", [])

    @property
    def report(self) -> str:
        problems = "".join(f"\n  - {p}" for p in self.problems)
        output = self.verifier.output(strip_ansi=True)
        return output + (f"\nSet-up and producer errors:{problems}" if problems else "")

    def verified(self) -> list[tuple[str, str]]:
        """(consumer, description) of every interaction that passed."""
        return [(r["consumer"], r["description"]) for r in self.results if r["result"] == "OK"]


async def verify(
    provider: str,
    *,
    pacts: list[Path] | None = None,
    url: str | None = None,
    states: Mapping[str, StateSetUp] | None = None,
    messages: Mapping[str, Producer] | None = None,
) -> Verification:
    """Replay the pacts naming `provider` against its app at `url` and its message producers."""
    if not (url or messages):
        raise ValueError("nothing to verify against: give the app's url, message producers or both")
    pacts = pacts_for(provider) if pacts is None else pacts
    loop = asyncio.get_running_loop()
    verifier = Verifier(provider, host="127.0.0.1")  # a new one per run: its ports stay taken
    run = Verification(provider, pacts, verifier)

    def on_loop(what: str, step: Awaitable[Any]) -> Any:
        """Run `step` on the test's loop from a verifier thread; a failure goes into the report."""
        future = asyncio.run_coroutine_threadsafe(step, loop)
        try:
            return future.result(TIMEOUT)
        except Exception as exc:
            future.cancel()
            run.problems.append(f"{what}: {type(exc).__name__}: {exc}")
            raise

    def set_up(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        # Never raises: pact retries a failing state change for minutes. A state that could not
        # be set up fails its interaction anyway, and the reason is in the report.
        if action != "setup" or not state:
            return
        if state not in (states or {}):
            run.problems.append(f"no set-up for provider state {state!r}")
            return
        with contextlib.suppress(Exception):  # on_loop reported it
            on_loop(f"provider state {state!r}", states[state](parameters or {}))

    def producer(description: str, produce: Producer) -> Callable[[], Message]:
        return lambda: on_loop(f"producing {description!r}", produce())

    for pact in pacts:
        verifier.add_source(pact)
    if url:
        verifier.add_transport(url=url)
    if messages:
        verifier.message_handler({d: producer(d, p) for d, p in messages.items()})
    verifier.state_handler(set_up)
    # A failure raises a bare "failed to execute": the results and the report say what failed.
    with contextlib.suppress(RuntimeError):
        await asyncio.to_thread(verifier.verify)
    return run


def assert_all_verified(run: Verification) -> None:
    """Every interaction in the provider's pacts was replayed and passed; zero is a failure."""
    expected = interactions_in(run.pacts)
    verified = run.verified()
    _record(run, expected)
    assert expected, f"no committed pact names the provider {run.provider!r}"
    assert sorted(verified) == sorted(expected), (
        f"{run.provider}: {len(verified)} of {len(expected)} interactions verified\n{run.report}"
    )


def _record(run: Verification, expected: list[tuple[str, str]]) -> None:
    """Leave the counts for `contracts/check.py` when it asked for them."""
    if folder := os.environ.get("PACT_RESULTS_DIR"):
        summary = {"provider": run.provider, "expected": expected, "verified": run.verified()}
        (Path(folder) / f"{run.provider}.json").write_text(json.dumps(summary, indent=2))
