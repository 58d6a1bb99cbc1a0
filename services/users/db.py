"""Tables of the `users` schema and the queries on them; database errors become domain errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert

from shared.db import AsyncpgStatement, Connection, Row, page_of, violated_constraint
from shared.inbox import first_time, inbox_table
from shared.outbox import outbox_table
from users.domain import EmailTaken, StatsUnderflow, UserNotFound

SCHEMA = "users"
EMAIL_KEY = "users_email_key"
ORDERS_PAID_NOT_NEGATIVE = "users_orders_paid_not_negative"
SPENT_NOT_NEGATIVE = "users_lifetime_spent_not_negative"
metadata = sa.MetaData(schema=SCHEMA)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("orders_paid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lifetime_spent_cents", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("orders_paid >= 0", name=ORDERS_PAID_NOT_NEGATIVE),
    sa.CheckConstraint("lifetime_spent_cents >= 0", name=SPENT_NOT_NEGATIVE),
)
# Case-insensitive uniqueness, enforced by the database so concurrent requests cannot both win.
sa.Index(EMAIL_KEY, sa.func.lower(users.c.email), unique=True)

outbox = outbox_table(metadata, SCHEMA)
inbox = inbox_table(metadata, SCHEMA)


# Statements built and compiled once (shared.db.AsyncpgStatement): building one per call costs
# more than running it.
_USER = sa.select(users).where(users.c.id == sa.bindparam("user_id"))
_FETCH_USER = AsyncpgStatement(_USER)
_FETCH_USER_FOR_UPDATE = AsyncpgStatement(_USER.with_for_update())
_orders_paid = users.c.orders_paid + sa.bindparam("orders", type_=sa.Integer)
_spent = users.c.lifetime_spent_cents + sa.bindparam("cents", type_=sa.BigInteger)
_first_time = first_time(inbox)
_counted = (
    sa.update(users)
    .where(users.c.id == sa.bindparam("user_id"), sa.exists(_first_time.select()))
    .values(orders_paid=_orders_paid, lifetime_spent_cents=_spent, updated_at=sa.func.now())
    .returning(users.c.id)
    .cte("counted")
)
_COUNT_ONCE = AsyncpgStatement(
    sa.select(
        sa.exists(_first_time.select()).label("first_time"),
        sa.exists(_counted.select()).label("counted"),
    )
)
# ON CONFLICT instead of catching the violation: a racing insert of the same email waits for the
# first to commit, then inserts nothing, and the transaction stays usable.
_INSERT_USER = AsyncpgStatement(
    insert(users)
    .values(id=sa.bindparam("user_id"), email=sa.bindparam("email"), name=sa.bindparam("name"))
    .on_conflict_do_nothing(index_elements=[sa.func.lower(users.c.email)])
    .returning(users)
)
# Sets the columns named at each call (`email`, `name`), compiled once per set of names.
_UPDATE_USER = AsyncpgStatement(
    sa.update(users)
    .where(users.c.id == sa.bindparam("target_id"))
    .values(updated_at=sa.func.now())
    .returning(users)
)
_DELETE_USER = AsyncpgStatement(
    sa.delete(users).where(users.c.id == sa.bindparam("user_id")).returning(users.c.id)
)


async def fetch_user(
    conn: Connection, user_id: uuid.UUID, *, for_update: bool = False
) -> Row | None:
    query = _FETCH_USER_FOR_UPDATE if for_update else _FETCH_USER
    return await query.first(conn, user_id=user_id)


async def list_users(conn: Connection, *, offset: int, limit: int) -> tuple[list[Row], int]:
    return await page_of(conn, users, offset=offset, limit=limit)


async def insert_user(conn: Connection, *, user_id: uuid.UUID, email: str, name: str) -> Row:
    """Insert a user; EmailTaken if the email exists in any letter case."""
    row = await _INSERT_USER.first(conn, user_id=user_id, email=email, name=name)
    if row is None:
        raise EmailTaken(email)
    return row


async def update_user(conn: Connection, user_id: uuid.UUID, changes: dict) -> Row:
    """Apply `changes` to an existing user; EmailTaken if the new email belongs to another user."""
    try:
        async with conn.transaction():  # a savepoint: a clash rolls back to here, not the request
            row = await _UPDATE_USER.first(conn, **changes, target_id=user_id)
    except Exception as exc:
        if violated_constraint(exc) == EMAIL_KEY:
            raise EmailTaken(changes["email"]) from exc
        raise
    if row is None:
        raise UserNotFound(user_id)
    return row


async def delete_user(conn: Connection, user_id: uuid.UUID) -> None:
    if await _DELETE_USER.first(conn, user_id=user_id) is None:
        raise UserNotFound(user_id)


async def count_once(
    conn: Connection, user_id: uuid.UUID, orders: int, cents: int, inbox_row: Mapping[str, str]
) -> bool:
    """Add to (or, negative, take from) a user's stats, with the message's inbox row, in one
    statement (`shared.handlers.OneStatement`); False for a message counted before.

    UserNotFound if there is no such user: the inbox row is written, as no retry can make a
    deleted user exist. StatsUnderflow if the result would be negative: the stats' CHECK fails
    the whole statement, so nothing is written and the message can be replayed once mended.
    """
    try:
        row = await _COUNT_ONCE.one(conn, user_id=user_id, orders=orders, cents=cents, **inbox_row)
    except Exception as exc:
        if violated_constraint(exc) in (ORDERS_PAID_NOT_NEGATIVE, SPENT_NOT_NEGATIVE):
            raise StatsUnderflow(user_id) from exc
        raise
    if row.first_time and not row.counted:
        raise UserNotFound(user_id)
    return row.first_time
