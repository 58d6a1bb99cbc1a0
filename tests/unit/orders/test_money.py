"""Totals in integer minor units and the fingerprint that identifies a repeated request."""

from __future__ import annotations

import uuid

import pytest

from orders.currencies import CURRENCIES
from orders.domain import Item, fingerprint, total_cents

pytestmark = pytest.mark.unit

USER = uuid.UUID("00000000-0000-4000-8000-000000000001")


def test_total_is_the_sum_of_quantity_times_unit_price():
    items = [Item("a", 3, 199), Item("b", 1, 1), Item("free", 2, 0)]
    assert total_cents(items) == 598


def test_large_totals_stay_exact():
    assert total_cents([Item("car", 10_000, 10**12)]) == 10**16


def test_same_request_same_fingerprint_and_any_change_another():
    items = [Item("a", 1, 100)]
    base = fingerprint(USER, "EUR", items)
    assert fingerprint(USER, "EUR", [Item("a", 1, 100)]) == base
    changed = [
        fingerprint(uuid.uuid4(), "EUR", items),
        fingerprint(USER, "USD", items),
        fingerprint(USER, "EUR", [Item("a", 2, 100)]),
        fingerprint(USER, "EUR", [Item("a", 1, 101)]),
        fingerprint(USER, "EUR", [Item("b", 1, 100)]),
        fingerprint(USER, "EUR", [*items, Item("a", 1, 100)]),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)


def test_currencies_are_circulating_iso_4217_codes():
    assert {"EUR", "USD", "JPY", "GBP", "CHF"} <= CURRENCIES
    assert not {"XAU", "XTS", "XXX", "eur", "EURO"} & CURRENCIES
    assert all(len(c) == 3 and c.isupper() for c in CURRENCIES)
