"""Connections to a RabbitMQ cluster: AMQP_URL lists its nodes, comma-separated, tried in turn.

aio-pika's robust connection reconnects to the one URL it was given (aio-pika issue #141, open
since 2018; a round-robin class was proposed in PR #680 and not merged), so a client whose node
died would wait for that node. `ClusterConnection` is the small subclass commonly used instead:
every connection attempt tries the nodes in turn, starting after the one it last used, and the
connection's channels, queues and consumers are restored on whichever node answered (quorum
queues are reachable from every node). One URL behaves exactly as `aio_pika.connect_robust`.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from yarl import URL

# The one step of RobustConnection that opens a transport; aio-pika calls it for the first
# connection and for every reconnection. Overriding it by its (name-mangled) name is the hook;
# fail at import, not silently, if an aio-pika upgrade renames it.
_ATTEMPT = "_RobustConnection__connect_transport"
if not hasattr(RobustConnection, _ATTEMPT):
    raise ImportError(f"aio-pika changed: RobustConnection has no {_ATTEMPT} to fail over with")


def node_urls(url: str) -> list[str]:
    """The URLs of the nodes in AMQP_URL: one, or several separated by commas."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("AMQP_URL names no node")
    return urls


class ClusterConnection(RobustConnection):
    """A robust connection that fails over: each attempt tries every node once, in turn."""

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        self._nodes = [URL(url) for url in urls]
        self._at = 0
        super().__init__(self._nodes[0], **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:
        attempt = getattr(super(), _ATTEMPT)
        # After a first connection, start at the next node: the one we had is likely the one
        # that died (any node serves every quorum queue, so a move costs nothing).
        if self.connection_attempt:
            self._move()
        for tried in range(1, len(self._nodes) + 1):
            try:
                return await attempt()
            except CONNECTION_EXCEPTIONS:
                if tried == len(self._nodes):
                    raise  # every node refused: aio-pika waits, then tries again
                self._move()

    def _move(self) -> None:
        self._at = (self._at + 1) % len(self._nodes)
        self.url = self._nodes[self._at]


async def connect_robust(
    url: str, *, timeout: float | None = None, **kwargs: Any
) -> ClusterConnection:
    """Like `aio_pika.connect_robust`, for one node or a comma-separated list of nodes."""
    connection = ClusterConnection(node_urls(url), **kwargs)
    await connection.connect(timeout)
    return connection


async def connect(url: str, **kwargs: Any) -> AbstractConnection:
    """A plain (not robust) connection to the first node of `url` that answers."""
    *others, last = node_urls(url)
    for node in others:
        try:
            return await aio_pika.connect(node, **kwargs)
        except CONNECTION_EXCEPTIONS:
            continue
    return await aio_pika.connect(last, **kwargs)
