"""The callables messages flow through: a service's handlers, and what a broker consumer calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.db import Connection
from shared.envelope import Envelope

# A service's handler: works in the caller's transaction, never commits (handlers.py of each
# service registers them by message type).
Handler = Callable[[Connection, Envelope], Awaitable[None]]

# A handler whose whole effect is one statement that writes the message's inbox row too
# (`shared.inbox.first_time`, given that row's values); False when the message was seen before.
StatementHandler = Callable[[Connection, Envelope, Mapping[str, str]], Awaitable[bool]]


@dataclass(frozen=True)
class OneStatement:
    """A `StatementHandler`, registered where a `Handler` would be: its effect and the message's
    inbox row are one statement, which Postgres runs all or nothing on its own, so it needs no
    transaction and no inbox insert before it: one round trip, where the inbox guard's
    transaction around a write takes four (BEGIN, the inbox row, the write, COMMIT)."""

    handler: StatementHandler


Registered = Handler | OneStatement

# What a broker adapter hands each decoded message to: the dispatcher, behind the inbox.
Receiver = Callable[[Envelope], Awaitable[None]]
