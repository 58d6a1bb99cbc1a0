"""A provider's messages exactly as its outbox relay would publish them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from pact.types import Message

from shared.db import AsyncpgStatement, Database, Row
from shared.envelope import CONTENT_TYPE, Envelope, encode


def as_published(row: Row) -> Message:
    """What `shared.outbox_relay` sends for an outbox row: body, content type and destination."""
    envelope = Envelope.model_validate(row.payload)
    if row.broker == "kafka":
        transport = {"topic": row.destination, "key": row.key or envelope.subject}
    else:
        transport = {"exchange": row.destination, "routingKey": row.routing_key}
    return {"contents": encode(envelope), "metadata": transport, "content_type": CONTENT_TYPE}


async def last_owed(
    database: Database,
    outbox: sa.Table,
    scenario: Callable[[], Awaitable[object]],
) -> Message:
    """Run `scenario` through the provider's real handlers; the last message it left in the outbox.

    The handlers build each envelope and pick its channel themselves, exactly as in production,
    so a renamed field, type or routing key shows up here as what the consumer did not expect.
    """
    last = sa.select(sa.func.coalesce(sa.func.max(outbox.c.id), 0).label("id"))
    async with database.autocommit() as conn:
        mark = (await AsyncpgStatement(last).one(conn)).id
    await scenario()
    query = sa.select(outbox).where(outbox.c.id > mark).order_by(outbox.c.id.desc()).limit(1)
    async with database.autocommit() as conn:
        row = await AsyncpgStatement(query).first(conn)
    if row is None:
        raise LookupError(f"the scenario left nothing in {outbox.fullname}")
    return as_published(row)
