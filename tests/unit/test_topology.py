"""The topology has one source, each service's wiring(): what is derived from it stays equal to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.topology import flow_table, flows, wirings, with_flow_table

pytestmark = pytest.mark.unit

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_message_flow_table_is_the_one_wiring_gives():
    readme = README.read_text()
    assert with_flow_table(readme, flow_table(wirings())) == readme, (
        "README.md's message-flow table drifted from the services' wiring(): run `make docs`"
    )


def test_every_exchange_is_declared_by_exactly_one_service():
    owners: dict[str, list[str]] = {}
    for wiring in wirings():
        for name in wiring.exchanges:
            owners.setdefault(name, []).append(wiring.service)
    bound = {sub.exchange for wiring in wirings() for sub in wiring.rabbit}
    produced = {f.channel.name for f in flows(wirings()) if f.channel.broker == "rabbit"}
    assert {name: len(names) for name, names in owners.items()} == dict.fromkeys(owners, 1)
    assert bound | produced <= owners.keys(), "an exchange is used that no service declares"


def test_every_message_type_produced_is_read_by_someone_or_is_a_plain_notification():
    produced = {t for f in flows(wirings()) for t in f.types}
    read = {t for f in flows(wirings()) for r in f.readers for t in r.types}
    # Every type read is produced by a service (a handler for a type nobody sends is dead code).
    assert read <= produced, read - produced


def test_each_binding_key_has_a_handler_and_nothing_else_is_bound():
    for wiring in wirings():
        for sub in wiring.rabbit:
            assert sub.routing_keys == tuple(sub.handlers)
