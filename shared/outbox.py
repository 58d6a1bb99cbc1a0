"""Transactional outbox: the messages a service owes, written in its business transaction (or
in the same statement as its business write).

The relay that publishes them lives in `shared.outbox_relay`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.channels import Channel
from shared.db import Connection, driver, quoted
from shared.envelope import Envelope
from shared.messages import Produced
from shared.tracing import trace_headers

# Postgres truncates identifiers (and refuses channel names) past 63 bytes.
_MAX_IDENTIFIER = 63
# What a row of the outbox is written with; the table fills in the rest.
_WRITTEN = (
    "message_id",
    "broker",
    "destination",
    "routing_key",
    "key",
    "type",
    "payload",
    "headers",
)


class Owed(NamedTuple):
    """A message owed: the channel it goes to, and its envelope."""

    channel: Channel
    envelope: Envelope


def _text(name: str) -> sa.BindParameter:
    return sa.bindparam(name, type_=sa.Text)


def outbox_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    """The `outbox` table of one service's schema."""
    table = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("broker", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("routing_key", sa.Text),
        sa.Column("key", sa.Text),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("broker IN ('kafka', 'rabbit')", name="outbox_broker"),
        schema=schema,
    )
    # The relay only ever scans unsent rows in id order; sent rows stay for audit and pruning.
    sa.Index("outbox_unsent", table.c.id, postgresql_where=table.c.sent_at.is_(None))
    return table


def notify_channel(table: sa.Table) -> str:
    """The LISTEN/NOTIFY channel on which writers of this outbox wake its relay."""
    return f"outbox:{table.schema or 'public'}"[:_MAX_IDENTIFIER]


async def add_to_outbox(
    conn: Connection,
    table: sa.Table,
    channel: Channel,
    envelope: Envelope,
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Queue `envelope` for `channel` inside the caller's transaction; never commits.

    The record key defaults to the envelope's subject, so one entity's messages stay in order.
    The current trace context goes into the headers (explicit `headers` win), so the message's
    consumers continue the trace of the request or message that owed it.
    """
    await _add(conn, table, [Owed(channel, envelope)], key=key, headers=headers)


async def owe(
    conn: Connection,
    table: sa.Table,
    message: Produced,
    *,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """Owe `message`: its envelope goes into the outbox in the caller's transaction (the relay
    publishes it once that commits). Returns the envelope, so what it causes can name it.

    Where the write that owes it is one statement, `in_turn` and `owing` add the message to
    that statement instead: a round trip less.
    """
    [(channel, envelope)] = in_turn(
        message, caused_by=caused_by, correlation_id=correlation_id, causation_id=causation_id
    )
    await add_to_outbox(conn, table, channel, envelope)
    return envelope


def in_turn(
    first: Produced,
    *then: Produced,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> list[Owed]:
    """`first`, and each of `then` caused by the message before it, as envelopes on their
    channels, to owe in one statement (`owing`).

    `first` continues `correlation_id` (a request's), or the correlation of `caused_by` (the
    message being handled); `causation_id` names a cause that is not a message (a webhook).
    """
    envelopes = [
        first.envelope(
            caused_by=caused_by, correlation_id=correlation_id, causation_id=causation_id
        )
    ]
    for message in then:
        envelopes.append(message.envelope(caused_by=envelopes[-1]))
    return [Owed(m.CHANNEL, e) for m, e in zip([first, *then], envelopes, strict=True)]


@functools.cache
def owing(table: sa.Table, count: int) -> sa.CTE:
    """The insert of `count` messages into the outbox, with the relay's wake-up, as a part of
    another statement (`add_cte`); `owing_values` gives its parameters (an `AsyncpgStatement`
    refuses values it has no place for, so a count that does not match fails loudly).

    So a write and the messages it owes can be one statement: a round trip less than the
    outbox's own insert, in a transaction; and outside one, a request's write needs no BEGIN
    and COMMIT either (Postgres runs a lone statement in a transaction of its own, all of it
    or none). The messages are written whatever the statement's other parts do: a write that
    finds nothing must fail its transaction (`AsyncpgStatement.one` raises).
    """
    written = [sa.column(column, sa.Text) for column in _WRITTEN]
    given = sa.values(*written, name="given").data(
        [tuple(_text(f"owed_{row}_{column}") for column in _WRITTEN) for row in range(count)]
    )
    # Every value comes as text (JSON too, as everywhere the services write it), and Postgres
    # casts each to its column's type.
    values = [sa.cast(c, table.c[c.name].type) for c in given.c]
    wake = sa.func.pg_notify(_text("owed_channel"), sa.literal_column("''"))
    insert = sa.insert(table).from_select(_WRITTEN, sa.select(*values))
    return insert.returning(wake).cte("owed")


def owing_values(table: sa.Table, owed: Sequence[Owed]) -> dict[str, object]:
    """The parameters of `owing(table, len(owed))` for these messages: as `add_to_outbox`
    writes them, keyed by the envelope's subject, with the current trace context as headers."""
    if not owed:
        return {}
    headers_text = json.dumps(trace_headers())
    values: dict[str, object] = {"owed_channel": notify_channel(table)}
    for row, (channel, envelope) in enumerate(owed):
        written = _row(channel, envelope, envelope.subject, headers_text)
        values |= {
            f"owed_{row}_{column}": value for column, value in zip(_WRITTEN, written, strict=True)
        }
    return values


async def _add(
    conn: Connection,
    table: sa.Table,
    owed: Sequence[Owed],
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """One insert for all of `owed`; `key` and `headers`, when given, go on every row."""
    connection = await driver(conn)
    headers_text = json.dumps(trace_headers() | dict(headers or {}))
    values = [
        value
        for channel, envelope in owed
        for value in _row(channel, envelope, envelope.subject if key is None else key, headers_text)
    ]
    await connection.execute(_insert(table, len(owed)), *values, notify_channel(table))


def _row(
    channel: Channel, envelope: Envelope, key: str | None, headers_text: str
) -> tuple[object, ...]:
    """A row's values, in the order of `_WRITTEN`; jsonb as JSON text, as the connections'
    codec takes it (shared.db)."""
    return (
        envelope.id,
        channel.broker,
        channel.name,
        channel.routing_key,
        key,
        envelope.type,
        envelope.model_dump_json(exclude_none=True),
        headers_text,
    )


@functools.cache
def _insert(table: sa.Table, rows: int) -> str:
    """The insert of `rows` rows, written once per table and count.

    NOTIFY rides in the same round trip as the row. It is transactional: delivered on commit,
    dropped on rollback, and identical notifications of one transaction fold into one, so a
    batch of rows wakes the relay once.
    """
    width = len(_WRITTEN)
    values = ", ".join(
        "(" + ", ".join(f"${row * width + n}" for n in range(1, width + 1)) + ")"
        for row in range(rows)
    )
    return (
        f"INSERT INTO {quoted(table)} ({', '.join(_WRITTEN)}) "
        f"VALUES {values} RETURNING pg_notify(${rows * width + 1}, '')"
    )
