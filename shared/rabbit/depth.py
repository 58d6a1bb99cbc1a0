"""How many messages a queue holds ready, asked of the broker itself."""

from __future__ import annotations

from typing import NamedTuple

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity


class Depth(NamedTuple):
    ready: int  # not counting messages delivered and not yet acked
    consumers: int


async def queue_depth(connection: AbstractConnection, name: str) -> Depth | None:
    """The queue's depth by a passive declare, or None if it does not exist.

    On a plain channel of its own: a passive declare of a missing queue closes its channel, and
    a robust channel answers one from its cache, with the counts of its first declare.
    """
    probe = aio_pika.Channel(connection, publisher_confirms=False)
    try:
        async with probe:
            declared = (await probe.declare_queue(name, passive=True)).declaration_result
    except ChannelNotFoundEntity:
        return None
    return Depth(declared.message_count or 0, declared.consumer_count or 0)
