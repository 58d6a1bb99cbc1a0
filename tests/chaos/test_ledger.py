"""The chaos ledger: orders and webhooks counted through every blow; nothing lost, nothing twice."""

from __future__ import annotations

import pytest

from shared.wiring import Wiring
from switchyard.topology import wirings
from tests.chaos.blows import (
    ConnectionsCut,
    DeliveredTwice,
    NodeDown,
    ServerCrashed,
    ServiceKilled,
)
from tests.chaos.run import chaos_run

# Every blow one after another, each waited out while customers keep coming: minutes, not seconds.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chaos,
    pytest.mark.ledger,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

SERVICES = ("users", "orders", "payments")
SERVERS = ("postgres", "rabbitmq", "kafka")


def servers_used(wiring: Wiring) -> list[str]:
    """The servers a service holds connections to: its database, and the brokers it uses."""
    brokers = {m.CHANNEL.broker for m in wiring.produces}
    brokers |= {"rabbit"} if wiring.rabbit or wiring.exchanges else set()
    brokers |= {"kafka"} if wiring.kafka else set()
    return ["postgres", *(BROKER_SERVERS[b] for b in sorted(brokers))]


BROKER_SERVERS = {"rabbit": "rabbitmq", "kafka": "kafka"}
SINGLE_NODE_BLOWS = [
    *(ServiceKilled(s) for s in SERVICES),
    *(ServerCrashed(s) for s in SERVERS),
    *(ConnectionsCut(w.service, server) for w in wirings() for server in servers_used(w)),
    DeliveredTwice(),
]
# Node 1 is the first address every service is given: its clients must fail over.
CLUSTER_BLOWS = [NodeDown("kafka", 1), NodeDown("rabbitmq", 1)]


async def test_single_node_stack_loses_nothing_and_applies_nothing_twice(fleet, stack, capsys):
    with capsys.disabled():
        ledger, tally = await chaos_run(fleet, stack, SINGLE_NODE_BLOWS, "single-node")
    _nothing_lost_nothing_twice(ledger, tally)


async def test_cluster_loses_nothing_when_one_node_of_each_broker_dies(
    cluster_fleet, cluster_stack, capsys
):
    with capsys.disabled():
        ledger, tally = await chaos_run(cluster_fleet, cluster_stack, CLUSTER_BLOWS, "cluster")
    _nothing_lost_nothing_twice(ledger, tally)


def _nothing_lost_nothing_twice(ledger, tally) -> None:
    """Every blow dealt, no client gave up, and the books balance."""
    assert not ledger.faults, ledger.faults
    assert not ledger.gave_up, ledger.gave_up
    readiness = ledger.readiness  # what each service said of its consumers after a failed run
    assert tally.lost == [], readiness
    assert tally.applied_twice == [], readiness
    assert tally.unacknowledged == [], readiness  # no client gave up: each would be a double
    assert tally.terminal == tally.acknowledged > 0
    assert tally.users_with_equal_stats == tally.users
    assert all(b.recovered is not None for b in ledger.blows)
