"""Tables of the `payments` schema and the queries on them."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert

from shared.db import AsyncpgStatement, Connection, Row, bound, json_text, page_of
from shared.inbox import inbox_table
from shared.outbox import Owed, outbox_table, owing, owing_values

SCHEMA = "payments"
metadata = sa.MetaData(schema=SCHEMA)


payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("order_id", UUID(as_uuid=True), nullable=False, unique=True),  # one per order
    sa.Column("user_id", UUID(as_uuid=True), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("provider_payment_id", sa.Text),
    sa.Column("failure_reason", sa.Text),
    # The order's correlation id, so events a webhook causes can be followed with the order.
    sa.Column("correlation_id", sa.Text, nullable=False),
    # The payment request's W3C trace context: a webhook's effects continue the order's trace.
    sa.Column("trace_context", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

# The provider's webhooks by webhook-id, raw body kept: the primary key makes a repeat a no-op.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),  # receipt order
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("order_id", UUID(as_uuid=True), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text),
    sa.Column(
        "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
)

# The command handler looks up the webhooks that wait for its order. Its statements write
# 'pending' into their SQL, not as a parameter: a prepared statement's generic plan can use the
# index only if its condition matches the index's own (otherwise that plan scans every webhook,
# and Postgres plans the statement again at each call instead).
_WAITING = webhooks.c.state == sa.literal_column("'pending'")
sa.Index(
    "webhooks_pending",
    webhooks.c.order_id,
    webhooks.c.seq,
    postgresql_where=_WAITING,
)

outbox = outbox_table(metadata, SCHEMA)
inbox = inbox_table(metadata, SCHEMA)


# The statements every payment runs, built once: building one per call costs more than running it.
# JSON is bound as text (shared.db.json_text): AsyncpgStatement refuses to convert values.
_LOCK_ORDER = AsyncpgStatement(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(sa.bindparam("order_key", type_=sa.Text), 0)
        )
    )
)
# Webhooks that came before their payment are rare, so the insert says whether any wait for it,
# and the command reads them only then: a round trip less for nearly every payment. The order is
# locked first (`lock_order`), so none is stored between this statement and the read.
_WEBHOOKS_WAITING = (
    sa.exists()
    .where(webhooks.c.order_id == sa.bindparam("waiting_for", type_=UUID(as_uuid=True)), _WAITING)
    .label("webhooks_waiting")
)
_INSERT_PAYMENT = AsyncpgStatement(
    insert(payments)
    .values(trace_context=json_text("trace_context"))
    .on_conflict_do_nothing(index_elements=["order_id"])
    .returning(*payments.c, _WEBHOOKS_WAITING)
)
_PAYMENT_FOR_ORDER = AsyncpgStatement(
    sa.select(payments).where(payments.c.order_id == sa.bindparam("order_id"))
)
_PAYMENT = AsyncpgStatement(sa.select(payments).where(payments.c.id == sa.bindparam("payment_id")))
_UPDATE_PAYMENT = (
    sa.update(payments)
    .where(payments.c.id == sa.bindparam("target_id"))
    .values(updated_at=sa.func.now())
    .returning(*payments.c)
)
_RECORD_PENDING_WEBHOOK = AsyncpgStatement(
    insert(webhooks)
    .values(state="pending")
    .on_conflict_do_nothing(index_elements=["webhook_id"])
    .returning(webhooks.c.webhook_id)
)
_RECORD_SETTLED_WEBHOOK = AsyncpgStatement(
    insert(webhooks)
    .values(processed_at=sa.func.now())
    .on_conflict_do_nothing(index_elements=["webhook_id"])
    .returning(webhooks.c.webhook_id)
)
_PENDING_WEBHOOKS = AsyncpgStatement(
    sa.select(webhooks)
    .where(webhooks.c.order_id == sa.bindparam("order_id"), _WAITING)
    .order_by(webhooks.c.seq)
)
_SETTLE_WEBHOOK = AsyncpgStatement(
    sa.update(webhooks)
    .where(webhooks.c.webhook_id == sa.bindparam("target_id"))
    .values(processed_at=sa.func.now())
)


async def lock_order(conn: Connection, order_id: uuid.UUID) -> None:
    """Serialise everything that touches one order's payment until the transaction ends.

    Without it, a webhook and the command for the same order could each miss the other's
    uncommitted row: the webhook kept pending for a payment that already exists.
    """
    await _LOCK_ORDER.execute(conn, order_key=str(order_id))


async def insert_payment(
    conn: Connection, *, trace_context: Mapping[str, str] | None = None, **values
) -> Row | None:
    """The new payment, or None if the order already has one. Its `webhooks_waiting` says
    whether webhooks of its order came before it (`pending_webhooks`)."""
    context = json.dumps(dict(trace_context or {}))
    waiting_for = values["order_id"]  # `order_id` names the value the insert writes
    return await _INSERT_PAYMENT.first(
        conn, trace_context=context, waiting_for=waiting_for, **values
    )


async def payment_for_order(conn: Connection, order_id: uuid.UUID) -> Row | None:
    return await _PAYMENT_FOR_ORDER.first(conn, order_id=order_id)


async def fetch_payment(conn: Connection, payment_id: uuid.UUID) -> Row | None:
    return await _PAYMENT.first(conn, payment_id=payment_id)


async def list_payments(
    conn: Connection, *, order_id: uuid.UUID | None, offset: int, limit: int
) -> tuple[list[Row], int]:
    where = [payments.c.order_id == order_id] if order_id is not None else []
    return await page_of(conn, payments, *where, offset=offset, limit=limit)


@functools.cache
def _update_payment(changed: frozenset[str], messages: int) -> AsyncpgStatement:
    """The update of these columns, owing this many messages (`shared.outbox.owing`), built once."""
    update = _UPDATE_PAYMENT.values(**bound(payments, *sorted(changed)))
    if not messages:
        return AsyncpgStatement(update)
    return AsyncpgStatement(sa.select(update.cte("changed")).add_cte(owing(outbox, messages)))


async def update_payment(
    conn: Connection, payment_id: uuid.UUID, *, owed: Sequence[Owed] = (), **values
) -> Row:
    """Write `values` on the payment, and the messages it owes (`shared.outbox.in_turn`), in
    one statement; returns the payment as it is now. The order is locked in the caller's
    transaction first: a payment that is not there raises, and the transaction, messages
    included, rolls back."""
    statement = _update_payment(frozenset(values), len(owed))
    return await statement.one(conn, **values, target_id=payment_id, **owing_values(outbox, owed))


async def record_webhook(conn: Connection, **values) -> bool:
    """Store a webhook to apply once its payment exists; False if its webhook-id was stored before."""
    return await _RECORD_PENDING_WEBHOOK.first(conn, **values) is not None


async def record_settled_webhook(conn: Connection, **values) -> bool:
    """Store a webhook as already applied or ignored (`state`, `outcome`); False if its
    webhook-id was stored before."""
    return await _RECORD_SETTLED_WEBHOOK.first(conn, **values) is not None


async def pending_webhooks(conn: Connection, order_id: uuid.UUID) -> list[Row]:
    """Webhooks that arrived before the order's payment existed, in the order received."""
    return await _PENDING_WEBHOOKS.all(conn, order_id=order_id)


async def settle_webhook(conn: Connection, webhook_id: str, state: str, outcome: str) -> None:
    await _SETTLE_WEBHOOK.execute(conn, target_id=webhook_id, state=state, outcome=outcome)
