"""Inbox: a consumer records each message id in its effect's transaction, so effects happen once."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
import structlog

from shared import metrics
from shared.db import Connection, Database, quoted
from shared.envelope import Envelope

log = structlog.get_logger(__name__)

Handler = Callable[[Connection, Envelope], Awaitable[None]]
GuardedHandler = Callable[[Envelope], Awaitable[None]]


def inbox_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    """The `inbox` table of one service's schema: one row per (consumer, message) handled."""
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )


class InboxGuard:
    """Runs a handler at most once per message id for one consumer."""

    def __init__(self, database: Database, table: sa.Table, consumer: str) -> None:
        self._database = database
        self._table = table
        self._consumer = consumer

    def wrap(self, handler: Handler) -> GuardedHandler:
        """Turn `handler(conn, envelope)` into `guarded(envelope)` for a transport.

        The handler works in the given transaction and must not commit: the guard commits its
        effect together with the inbox row.
        """

        async def guarded(envelope: Envelope) -> None:
            async with self._database.transaction() as conn:
                if not await self._record(conn, envelope):
                    log.info(
                        "duplicate skipped",
                        consumer=self._consumer,
                        id=envelope.id,
                        type=envelope.type,
                    )
                    metrics.DUPLICATES_SKIPPED.labels(self._consumer).inc()
                    return  # the transport acks: the effect is already committed
                # Same connection, same transaction: the effect and the inbox row commit together,
                # and a handler that raises rolls both back so a redelivery is processed again.
                await handler(conn, envelope)

        guarded.__name__ = getattr(handler, "__name__", "guarded")
        guarded.__qualname__ = getattr(handler, "__qualname__", "guarded")
        return guarded

    __call__ = wrap

    async def _record(self, conn: Connection, envelope: Envelope) -> bool:
        """Insert the inbox row; False when this consumer already has it.

        A concurrent delivery of the same id blocks on the primary key until the first
        transaction ends, then sees the row (duplicate) or, if that one rolled back, takes over.
        """
        inserted = await conn.fetchval(
            _record_once(self._table), self._consumer, envelope.id, envelope.type
        )
        return inserted is not None


@functools.cache
def _record_once(table: sa.Table) -> str:
    """Written once per table, not per message."""
    return (
        f"INSERT INTO {quoted(table)} (consumer, message_id, type) VALUES ($1, $2, $3) "
        "ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id"
    )
