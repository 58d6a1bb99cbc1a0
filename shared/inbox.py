"""Inbox: a consumer records each message id with its effect, in one transaction or in the
effect's own statement, so effects happen once."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert

from shared import metrics
from shared.db import Connection, Database, quoted
from shared.envelope import Envelope
from shared.handlers import Handler, StatementHandler

log = structlog.get_logger(__name__)

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


@functools.cache
def first_time(table: sa.Table) -> sa.CTE:
    """The message's inbox row as a part of its effect's statement
    (`shared.handlers.OneStatement`): it inserts the row and returns it, or returns nothing
    when the consumer had the message already.

    The effect must write only `WHERE EXISTS (SELECT FROM first_time)` and select whether the
    row was new: the parts of one statement see the same snapshot and run in no set order, and
    what one returns is all another can see of it (so the statement must not read the inbox
    table itself). A concurrent delivery of the same id waits on the primary key, as in
    `InboxGuard._record`. A statement that fails leaves no row, so a message parked for its
    error can be replayed once the cause is mended. `inbox_row` gives its values.
    """
    text = functools.partial(sa.bindparam, type_=sa.Text)
    row = insert(table).values(
        consumer=text("inbox_consumer"),
        message_id=text("inbox_message_id"),
        type=text("inbox_type"),
    )
    skipped = row.on_conflict_do_nothing(index_elements=["consumer", "message_id"])
    return skipped.returning(table.c.message_id).cte("first_time")


def inbox_row(consumer: str, envelope: Envelope) -> dict[str, str]:
    """The values of `first_time`'s parameters for this consumer and message."""
    return {
        "inbox_consumer": consumer,
        "inbox_message_id": envelope.id,
        "inbox_type": envelope.type,
    }


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
                    self._skipped(envelope)
                    return  # the transport acks: the effect is already committed
                # Same connection, same transaction: the effect and the inbox row commit together,
                # and a handler that raises rolls both back so a redelivery is processed again.
                await handler(conn, envelope)

        return functools.update_wrapper(guarded, handler)

    def wrap_statement(self, handler: StatementHandler) -> GuardedHandler:
        """Turn `handler(conn, envelope, inbox_row)` into `guarded(envelope)`: one statement
        outside a transaction, its inbox row (`first_time`) given the values in `inbox_row`."""

        async def guarded(envelope: Envelope) -> None:
            async with self._database.autocommit() as conn:
                # Strictly False: a handler that returns nothing has not said it was a duplicate.
                if await handler(conn, envelope, inbox_row(self._consumer, envelope)) is False:
                    self._skipped(envelope)

        return functools.update_wrapper(guarded, handler)

    __call__ = wrap

    def _skipped(self, envelope: Envelope) -> None:
        log.info("duplicate skipped", consumer=self._consumer, id=envelope.id, type=envelope.type)
        metrics.DUPLICATES_SKIPPED.labels(self._consumer).inc()

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
