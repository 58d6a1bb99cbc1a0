"""Tables of the `orders` schema and the queries on them."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from orders.domain import OrderStatus, Outcome
from shared.db import (
    AsyncpgStatement,
    Connection,
    Row,
    bound,
    json_text,
    page_of,
    violated_constraint,
)
from shared.inbox import inbox_table
from shared.outbox import Owed, outbox_table, owing, owing_values

SCHEMA = "orders"
metadata = sa.MetaData(schema=SCHEMA)


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column(
        "items", JSONB, nullable=False
    ),  # fixed at creation: [{sku, quantity, unit_price_cents}]
    sa.Column("payment_id", sa.Text),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("refund_requested_at", sa.DateTime(timezone=True)),
    _timestamp("created_at"),
    _timestamp("updated_at"),
)

# One row per key, written in the order's statement: a concurrent twin blocks on the key
# until the first commits, then fails, so one key never yields two orders.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("order_id", UUID(as_uuid=True), sa.ForeignKey(orders.c.id), nullable=False),
    _timestamp("created_at"),
)

# Everything that happened to an order, including events it ignored (no foreign key: an event
# may name an order that does not exist, and that is worth keeping too).
order_history = sa.Table(
    "order_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("order_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    _timestamp("recorded_at"),
)

outbox = outbox_table(metadata, SCHEMA)
inbox = inbox_table(metadata, SCHEMA)


def is_key_clash(error: BaseException) -> bool:
    """Another request took the same Idempotency-Key first."""
    return violated_constraint(error) == "idempotency_keys_pkey"


class HistoryLine(NamedTuple):
    """What a line of an order's history says besides the order and where it went."""

    event: str
    outcome: str
    message_id: str | None = None
    from_status: str | None = None


# Statements on every order's path, built once: building one per call costs more than running it.
# JSON is bound as text (shared.db.json_text): AsyncpgStatement refuses to convert values.
_ORDER = sa.select(orders).where(orders.c.id == sa.bindparam("order_id"))
_FETCH_ORDER = AsyncpgStatement(_ORDER)
# Locked: serialises HTTP cancels and consumed events on the same order.
_FETCH_ORDER_FOR_UPDATE = AsyncpgStatement(_ORDER.with_for_update())


def _with_line(
    change: sa.Insert | sa.Update, *, key: bool = False, messages: int = 0
) -> AsyncpgStatement:
    """`change` to an order, and the history line saying so, in one statement: a round trip
    less than writing the line apart. `change` returns the order's columns; the line takes the
    order and its new status from them, and the rest from a `HistoryLine`'s parameters. With
    `key`, the request's idempotency key too (parameters `key`, `request_hash`); with
    `messages`, that many messages into the outbox (`shared.outbox.owing`)."""
    changed = change.cte("changed")
    line_values = [sa.bindparam(name, type_=sa.Text) for name in HistoryLine._fields]
    line = sa.insert(order_history).from_select(
        ["order_id", "to_status", *HistoryLine._fields],
        sa.select(changed.c.id, changed.c.status, *line_values),
    )
    statement = sa.select(changed).add_cte(line.cte("line"))
    if key:
        given = [sa.bindparam(name, type_=sa.Text) for name in ("key", "request_hash")]
        remembered = sa.insert(idempotency_keys).from_select(
            ["key", "request_hash", "order_id"], sa.select(*given, changed.c.id)
        )
        statement = statement.add_cte(remembered.cte("remembered"))
    if messages:
        statement = statement.add_cte(owing(outbox, messages))
    return AsyncpgStatement(statement)


_PLACED = HistoryLine(event="placed", outcome=Outcome.APPLIED)._asdict()
_NEW_ORDER = (
    sa.insert(orders)
    .values(
        **bound(orders, "id", "user_id", "status", "total_cents", "currency"),
        items=json_text("items"),
    )
    .returning(*orders.c)
)


@functools.cache
def _insert_order(key: bool, messages: int) -> AsyncpgStatement:
    """The insert of an order, with or without a key, owing this many messages, built once."""
    return _with_line(_NEW_ORDER, key=key, messages=messages)


_UPDATE_ORDER = (
    sa.update(orders)
    .where(orders.c.id == sa.bindparam("target_id"))
    .values(updated_at=sa.func.now())
    .returning(*orders.c)
)


@functools.cache
def _update_order(
    changed: frozenset[str], refund_requested: bool, messages: int
) -> AsyncpgStatement:
    """The update of these columns (and the moment a refund was asked for), owing this many
    messages, built once."""
    update = _UPDATE_ORDER.values(**bound(orders, *sorted(changed)))
    if refund_requested:
        update = update.values(refund_requested_at=sa.func.now())
    return _with_line(update, messages=messages)


_KEY = AsyncpgStatement(
    sa.select(idempotency_keys).where(idempotency_keys.c.key == sa.bindparam("given_key"))
)
_PENDING_ORDERS_OF = AsyncpgStatement(
    sa.select(orders)
    .where(
        orders.c.user_id == sa.bindparam("user_id"),
        orders.c.status == OrderStatus.PENDING_PAYMENT,
    )
    .order_by(orders.c.created_at, orders.c.id)
    .with_for_update()
)
# History lines are written on every order event and read back only by people.
_RECORD = AsyncpgStatement(sa.insert(order_history).inline())


async def fetch_order(conn: Connection, order_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    query = _FETCH_ORDER_FOR_UPDATE if lock else _FETCH_ORDER
    return await query.first(conn, order_id=order_id)


async def update_order(
    conn: Connection, order_id: uuid.UUID, line: HistoryLine, *, refund_requested: bool = False,
    owed: Sequence[Owed] = (), **changes,
) -> Row:  # fmt: skip
    """Write `changes` (and the moment a refund was asked for) with the history line of the
    move and the messages it owes (`shared.outbox.in_turn`), in one statement; returns the
    order as it is now. The order is locked in the caller's transaction first: an order that
    is not there raises, and the transaction, messages included, rolls back."""
    statement = _update_order(frozenset(changes), refund_requested, len(owed))
    return await statement.one(
        conn, **changes, **line._asdict(), target_id=order_id, **owing_values(outbox, owed)
    )


async def list_orders(conn: Connection, user_id: uuid.UUID | None, *, offset: int, limit: int):
    where = [] if user_id is None else [orders.c.user_id == user_id]
    return await page_of(conn, orders, *where, offset=offset, limit=limit)


async def pending_orders_of(conn: Connection, user_id: uuid.UUID) -> list[Row]:
    return await _PENDING_ORDERS_OF.all(conn, user_id=user_id)


async def insert_order(
    conn: Connection,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    total: int,
    currency: str,
    items: list[dict],
    *,
    key: str | None = None,
    request_hash: str | None = None,
    owed: Sequence[Owed] = (),
) -> Row:
    """Insert the order with its first history line ("placed"), the request's idempotency key
    when given one, and the messages it owes (`shared.outbox.in_turn`), all in one statement;
    returns the order as stored (defaults included).

    One statement is all or nothing on its own: on an `autocommit()` connection it needs no
    BEGIN and COMMIT. A key already taken raises asyncpg's UniqueViolationError
    (`is_key_clash`), and nothing is written.
    """
    values = dict(id=order_id, user_id=user_id, status=status, total_cents=total,
                  currency=currency, items=json.dumps(items), **_PLACED)  # fmt: skip
    if key is not None:
        values |= dict(key=key, request_hash=request_hash)
    statement = _insert_order(key is not None, len(owed))
    return await statement.one(conn, **values, **owing_values(outbox, owed))


async def find_key(conn: Connection, key: str) -> Row | None:
    return await _KEY.first(conn, given_key=key)


async def record(conn: Connection, order_id: uuid.UUID, event: str, outcome: str, **rest):
    """One line of the order's history, for an event that changed nothing (`update_order`
    writes the line of a move itself)."""
    await _RECORD.execute(conn, order_id=order_id, event=event, outcome=outcome, **rest)
