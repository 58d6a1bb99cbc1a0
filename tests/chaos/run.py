"""One chaos run: customers and a provider keep coming while the blows strike, one by one."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from pathlib import Path

import httpx

from switchyard.client import SwitchyardClient
from switchyard.topology import flows, wirings
from tests.chaos.blows import Arena
from tests.chaos.ledger import Ledger, Tally
from tests.chaos.redelivery import RabbitCopies
from tests.chaos.shop import Shop
from tests.support.eventually import eventually

USERS = 5
PACE = 0.1  # seconds between two new customers: about ten orders a second
AT_LEAST = 60  # orders, however quickly the blows are over
REPORTS = Path(os.environ.get("CHAOS_REPORTS", "build/chaos"))


async def chaos_run(fleet, endpoints, blows, mode: str) -> tuple[Ledger, Tally]:
    """Run the shop through every blow, then reconcile the ledger and report it."""
    ledger = Ledger()
    client = SwitchyardClient(fleet.urls, http=httpx.AsyncClient(timeout=5))
    try:
        user_ids = [(await client.create_user())["id"] for _ in range(USERS)]
        shop = Shop(client, ledger, user_ids)
        copies = RabbitCopies(endpoints.amqp_url.split(",")[0], fleet.prefix, flows(wirings()))
        async with copies:
            arena = Arena(fleet, endpoints, copies, ledger)
            chaos = asyncio.create_task(_strike_all(arena, ledger, blows))
            orders: list[asyncio.Task] = []
            while not chaos.done() or len(orders) < AT_LEAST:
                orders.append(asyncio.create_task(shop.order(len(orders))))
                await asyncio.sleep(PACE)  # the customers' arrival rate, not a wait
            await chaos  # a blow the system could not take is in ledger.faults
            for n, outcome in enumerate(await asyncio.gather(*orders, return_exceptions=True)):
                if isinstance(outcome, BaseException):  # a bug in the shop, not the system's
                    ledger.faults.append(f"order #{n}: the customer's code raised {outcome!r}")
    finally:
        await client.aclose()
    for blow in ledger.blows:
        blow.recovered = ledger.flowing_since(blow.struck)
    # The books are checked with a client of their own, as an auditor would, not the shop's.
    auditor = SwitchyardClient(fleet.urls, http=httpx.AsyncClient(timeout=10))
    try:
        tally = await ledger.reconcile(auditor, user_ids)
        wrong = (ledger.faults or ledger.gave_up or tally.lost or tally.applied_twice
                 or tally.unacknowledged)  # fmt: skip
        if wrong:  # which consumer was dead or stalled at the end, in the services' own words
            ledger.readiness = await _readiness(auditor, fleet.urls)
    finally:
        await auditor.aclose()
    ledger.report(mode, tally, REPORTS / f"ledger-{mode}.json")
    if wrong:
        _keep_logs(fleet, REPORTS / f"logs-{mode}")
    return ledger, tally


async def _readiness(client: SwitchyardClient, urls) -> dict[str, dict]:
    """Each service's /readyz checks, or why it did not answer."""
    found = {}
    for service in ("users", "orders", "payments"):
        try:
            response = await client.http.get(f"{getattr(urls, service)}/readyz")
            found[service] = response.json().get("checks", {})
        except (httpx.HTTPError, ValueError) as exc:
            found[service] = {"readyz": repr(exc)}
    return found


def _keep_logs(fleet, folder: Path) -> None:
    """The services' logs of a failed run, kept beside its ledger (the fleet's own are removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in fleet.processes:
        (folder / f"{name}.log").write_text(fleet.logs(name))
    print(f"the services' logs are in {folder}")


async def _strike_all(arena: Arena, ledger: Ledger, blows) -> None:
    """Each blow once orders flow again after the one before, and a last wait for the flow.

    A blow that fails, or a flow that does not come back, is written down and ends the blows,
    so the ledger is still reconciled and printed: the test fails on it afterwards.
    """
    since = ledger.started
    for blow in [*blows, None]:
        after = ledger.blows[-1].name if ledger.blows else "the start"
        try:
            await eventually(lambda since=since: ledger.flowing_since(since), timeout=150,
                             message=f"orders flowing again after {after}")  # fmt: skip
        except AssertionError as exc:
            ledger.faults.append(str(exc))
            return
        if blow is None:
            return
        struck = ledger.strike(blow.name)
        try:
            struck.outcome = await blow.strike(arena)
        except Exception as exc:
            struck.outcome = f"failed: {exc!r}"[:300]
            where = traceback.extract_tb(exc.__traceback__)[-1]
            ledger.faults.append(f"{blow.name}: {exc!r} at {where.filename}:{where.lineno}")
            return
        struck.healed = time.monotonic()
        since = struck.struck
