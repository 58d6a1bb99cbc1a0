"""The chaos run's books: every acknowledgement the system gave, and what it made of each.

A client's view is the only one that counts: an order is owed once the API answered 201, a
webhook's effect once the provider was answered 2xx. At the end the ledger is reconciled against
what the services say (orders, payments, users' stats), and every difference is either lost (owed
and missing) or applied twice (present more often than owed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from switchyard.client import SwitchyardClient

# Each order's ending, told to it by the customer and the provider; anything else is a fault.
PAID, FAILED, CANCELLED = "paid", "payment_failed", "cancelled"
PAYMENTS_AT_THE_END = {PAID: ["succeeded"], FAILED: ["failed"], CANCELLED: ["refunded"]}
FLOWING_AGAIN = 3  # orders placed after a blow, carried to their ending, say the system recovered


@dataclass
class Placed:
    """One order the API acknowledged, and the ending its customer and provider lead it to."""

    order_id: str
    user_id: str
    total_cents: int
    ending: str
    first_try: float  # when the customer first asked (monotonic seconds)
    ended_at: float | None = None  # when the customer saw the ending


@dataclass
class Blow:
    """One fault: when it struck, when it was over, and when orders flowed through again."""

    name: str
    struck: float
    healed: float | None = None
    recovered: float | None = None
    outcome: str = ""  # what the blow did, in its own words ("restarted", "12 connections reset")

    def seconds(self, until: float | None) -> float | None:
        return None if until is None else round(until - self.struck, 1)


@dataclass
class Tally:
    """What the reconciliation found; `lost` and `applied_twice` name each case."""

    acknowledged: int
    terminal: int
    paid_exactly_once: int
    paid_expected: int
    webhooks_answered: int
    users_with_equal_stats: int
    users: int
    lost: list[str] = field(default_factory=list)
    applied_twice: list[str] = field(default_factory=list)
    # Stored, but no client was ever told: a second order behind a retried key, or the one
    # order of a customer who gave up. With no request given up, each is a double.
    unacknowledged: list[str] = field(default_factory=list)


class Ledger:
    """Written by the customers, the provider and the blows while the run goes on."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.placed: dict[str, Placed] = {}
        self.blows: list[Blow] = []
        self.retries: Counter[str] = Counter()  # requests that had to be asked again, by kind
        self.webhooks_answered = 0
        self.gave_up: list[str] = []  # a client stopped retrying: the system never came back
        self.faults: list[str] = []  # a blow that could not be dealt, or a flow that never resumed
        self.readiness: dict[str, dict] = {}  # each service's /readyz checks, after a failed run

    def acknowledged(self, placed: Placed) -> None:
        self.placed[placed.order_id] = placed

    def ended(self, order_id: str) -> None:
        self.placed[order_id].ended_at = time.monotonic()

    def strike(self, name: str) -> Blow:
        blow = Blow(name, time.monotonic())
        self.blows.append(blow)
        return blow

    def flowing_since(self, since: float) -> float | None:
        """When the FLOWING_AGAIN-th order first asked for after `since` reached its ending."""
        ends = sorted(
            p.ended_at for p in self.placed.values() if p.first_try >= since and p.ended_at
        )
        return ends[FLOWING_AGAIN - 1] if len(ends) >= FLOWING_AGAIN else None

    async def reconcile(self, client: SwitchyardClient, user_ids: list[str]) -> Tally:
        """Count, against the services' own answers, what became of every acknowledgement."""
        placed = self.placed.values()
        tally = Tally(
            acknowledged=len(self.placed),
            terminal=0,
            paid_exactly_once=0,
            paid_expected=sum(p.ending == PAID for p in placed),
            webhooks_answered=self.webhooks_answered,
            users_with_equal_stats=0,
            users=len(user_ids),
        )
        for user_id in user_ids:
            orders = await _all_orders(client, user_id)
            for order_id in orders.keys() - self.placed.keys():
                tally.unacknowledged.append(f"order {order_id}: stored, never acknowledged")
            owed = [p for p in placed if p.user_id == user_id]
            for p in owed:
                status = orders.get(p.order_id)
                payments = [x["status"] for x in await client.payments_for(p.order_id)]
                if len(payments) > 1:
                    tally.applied_twice.append(f"order {p.order_id}: payments {payments}")
                if status is None:
                    tally.lost.append(f"order {p.order_id}: acknowledged, not stored")
                elif status != p.ending or payments != PAYMENTS_AT_THE_END[p.ending]:
                    tally.lost.append(
                        f"order {p.order_id}: {status} with payments {payments}, "
                        f"owed {p.ending} with {PAYMENTS_AT_THE_END[p.ending]}"
                    )
                else:
                    tally.terminal += 1
                    tally.paid_exactly_once += p.ending == PAID
            paid = [p for p in owed if p.ending == PAID]
            owed_stats = {"orders_paid": len(paid),
                          "lifetime_spent_cents": sum(p.total_cents for p in paid)}  # fmt: skip
            stats = await _settled_stats(client, user_id, owed_stats)
            if stats == owed_stats:
                tally.users_with_equal_stats += 1
            elif all(stats[k] >= owed_stats[k] for k in owed_stats):  # some payment counted twice
                tally.applied_twice.append(f"user {user_id}: stats {stats}, owed {owed_stats}")
            else:  # a payment missing, or counted for the wrong amount
                tally.lost.append(f"user {user_id}: stats {stats}, owed {owed_stats}")
        return tally

    def report(self, mode: str, tally: Tally, path: Path) -> None:
        """Print the run's table and write it, with every lost or doubled case, as JSON."""
        console = Console(width=110)
        table = Table(title=f"chaos ledger ({mode})", show_header=False)
        for label, value in [
            ("orders acknowledged", tally.acknowledged),
            ("orders in their terminal state", tally.terminal),
            ("paid exactly once", f"{tally.paid_exactly_once} of {tally.paid_expected}"),
            ("webhooks answered 2xx", tally.webhooks_answered),
            ("lost", len(tally.lost)),
            ("applied twice", len(tally.applied_twice)),
            ("stored, never acknowledged", len(tally.unacknowledged)),
            ("users' stats = sum of paid orders",
             f"{tally.users_with_equal_stats} of {tally.users}"),
            ("client retries", ", ".join(f"{k} {v}" for k, v in sorted(self.retries.items()))),
            ("requests given up", len(self.gave_up)),
            ("blows that failed", len(self.faults)),
        ]:  # fmt: skip
            table.add_row(label, str(value))
        blows = Table(title="blows (seconds after each struck)")
        for column in ("blow", "what it did", "over after", "orders flowing again after"):
            blows.add_column(column)
        for blow in self.blows:
            blows.add_row(blow.name, blow.outcome, _seconds(blow.seconds(blow.healed)),
                          _seconds(blow.seconds(blow.recovered)))  # fmt: skip
        console.print(table, blows)
        for case in [*tally.lost, *tally.applied_twice, *tally.unacknowledged, *self.gave_up,
                     *self.faults]:  # fmt: skip
            console.print(f"  {case}")
        for service, checks in self.readiness.items():
            console.print(f"  {service} /readyz: {checks}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "mode": mode,
            "seconds": round(time.monotonic() - self.started, 1),
            "tally": asdict(tally),
            "retries": dict(self.retries),
            "gave_up": self.gave_up,
            "faults": self.faults,
            "readiness": self.readiness,
            "blows": [{"name": b.name, "outcome": b.outcome, "over_after": b.seconds(b.healed),
                       "recovered_after": b.seconds(b.recovered)} for b in self.blows],
        }, indent=2) + "\n")  # fmt: skip


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


async def _all_orders(client: SwitchyardClient, user_id: str) -> dict[str, str]:
    """Every order the orders service holds for the user: id -> status."""
    found: dict[str, str] = {}
    page = 1
    while True:
        response = await client.http.get(
            f"{client.urls.orders}/api/v1/orders",
            params={"user_id": user_id, "page": page, "limit": 100},
        )
        response.raise_for_status()
        body = response.json()
        found |= {o["id"]: o["status"] for o in body["items"]}
        if page >= body["pages"]:
            return found
        page += 1


async def _settled_stats(client: SwitchyardClient, user_id: str, owed: dict) -> dict:
    """The user's stats once they equal what is owed, or as they stand after a bounded wait.

    Stats follow `order.paid` through Kafka, so they may trail the orders by a moment; a count
    that is too high would not come down, and one that stays low after the wait was lost.
    """
    deadline = time.monotonic() + 30
    while True:
        stats = (await client.get_user(user_id))["stats"]
        if stats == owed or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)  # a reader's poll; the bound is the deadline above
