"""Users' rules, free of I/O."""

from __future__ import annotations


class UserNotFound(Exception):
    """No user with that id (or it was deleted)."""


class EmailTaken(Exception):
    """Another user already has that email, compared case-insensitively."""


class StatsUnderflow(Exception):
    """A refund would take a user's stats below zero: it refunds an order that was never counted."""


def changed_fields(current: dict[str, object], wanted: dict[str, object]) -> dict[str, object]:
    """The fields of `wanted` that differ from `current`: an update that changes nothing is no event."""
    return {name: value for name, value in wanted.items() if current.get(name) != value}
