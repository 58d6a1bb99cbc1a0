"""The two callables messages flow through: a service's handler, and what a broker consumer calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.db import Connection
from shared.envelope import Envelope

# A service's handler: works in the caller's transaction, never commits (handlers.py of each
# service registers them by message type).
Handler = Callable[[Connection, Envelope], Awaitable[None]]

# What a broker adapter hands each decoded message to: the dispatcher, behind the inbox.
Receiver = Callable[[Envelope], Awaitable[None]]
