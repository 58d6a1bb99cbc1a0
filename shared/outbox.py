"""Transactional outbox: the messages a service owes, written in its business transaction.

The relay that publishes them lives in `shared.outbox_relay`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.channels import Channel
from shared.envelope import Envelope
from shared.messages import Produced
from shared.tracing import trace_headers

# Postgres truncates identifiers (and refuses channel names) past 63 bytes.
_MAX_IDENTIFIER = 63


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
    session: AsyncSession,
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
    await session.execute(_insert(table), _row(channel, envelope, key, headers))


async def owe(
    session: AsyncSession,
    table: sa.Table,
    message: Produced,
    *,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """Owe `message`: its envelope goes into the outbox in the caller's transaction (the relay
    publishes it once that commits). Returns the envelope, so what it causes can name it."""
    envelope = message.envelope(
        caused_by=caused_by, correlation_id=correlation_id, causation_id=causation_id
    )
    await add_to_outbox(session, table, message.CHANNEL, envelope)
    return envelope


def _row(
    channel: Channel, envelope: Envelope, key: str | None, headers: Mapping[str, str] | None
) -> dict:
    return {
        "message_id": envelope.id,
        "broker": channel.broker,
        "destination": channel.name,
        "routing_key": channel.routing_key,
        "key": envelope.subject if key is None else key,
        "type": envelope.type,
        "payload": envelope.model_dump(mode="json", exclude_none=True),
        "headers": trace_headers() | dict(headers or {}),
    }


@functools.cache
def _insert(table: sa.Table) -> sa.Insert:
    """The insert, built once per table: building one per row costs more CPU than running it.

    NOTIFY rides in the same round trip as the row. It is transactional: delivered on commit,
    dropped on rollback, and identical notifications of one transaction fold into one, so a
    batch of rows wakes the relay once.
    """
    return sa.insert(table).returning(sa.func.pg_notify(notify_channel(table), ""))
