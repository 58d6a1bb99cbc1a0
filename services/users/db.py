"""Tables of the `users` schema and the queries on them; database errors become domain errors."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import AsyncpgStatement, Row, page_of, violated_constraint
from shared.inbox import inbox_table
from shared.outbox import outbox_table
from users.domain import EmailTaken, StatsUnderflow, UserNotFound

SCHEMA = "users"
EMAIL_KEY = "users_email_key"
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
    sa.CheckConstraint("orders_paid >= 0", name="users_orders_paid_not_negative"),
    sa.CheckConstraint("lifetime_spent_cents >= 0", name="users_lifetime_spent_not_negative"),
)
# Case-insensitive uniqueness, enforced by the database so concurrent requests cannot both win.
sa.Index(EMAIL_KEY, sa.func.lower(users.c.email), unique=True)

outbox = outbox_table(metadata, SCHEMA)
inbox = inbox_table(metadata, SCHEMA)


# Statements on every order's path, built once: building one per call costs more than running it.
_USER = sa.select(users).where(users.c.id == sa.bindparam("user_id"))
# Read for every order placed: on asyncpg directly (shared.db.AsyncpgStatement).
_FETCH_USER = AsyncpgStatement(_USER)
_FETCH_USER_FOR_UPDATE = AsyncpgStatement(_USER.with_for_update())
_orders_paid = users.c.orders_paid + sa.bindparam("orders", type_=sa.Integer)
_spent = users.c.lifetime_spent_cents + sa.bindparam("cents", type_=sa.BigInteger)
# On every paid or refunded order: on asyncpg directly (shared.db.AsyncpgStatement).
_ADD_TO_STATS = AsyncpgStatement(
    sa.update(users)
    .where(users.c.id == sa.bindparam("user_id"), _orders_paid >= 0, _spent >= 0)
    .values(orders_paid=_orders_paid, lifetime_spent_cents=_spent, updated_at=sa.func.now())
    .returning(users.c.id)
)


async def fetch_user(
    conn: AsyncConnection, user_id: uuid.UUID, *, for_update: bool = False
) -> Row | None:
    query = _FETCH_USER_FOR_UPDATE if for_update else _FETCH_USER
    return await query.first(conn, user_id=user_id)


async def list_users(conn: AsyncConnection, *, offset: int, limit: int) -> tuple[list[sa.Row], int]:
    return await page_of(conn, users, offset=offset, limit=limit)


async def insert_user(
    conn: AsyncConnection, *, user_id: uuid.UUID, email: str, name: str
) -> sa.Row:
    """Insert a user; EmailTaken if the email exists in any letter case.

    ON CONFLICT instead of catching the violation: a racing insert of the same email waits for
    the first to commit, then inserts nothing, and this transaction stays usable.
    """
    statement = (
        insert(users)
        .values(id=user_id, email=email, name=name)
        .on_conflict_do_nothing(index_elements=[sa.func.lower(users.c.email)])
        .returning(users)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise EmailTaken(email)
    return row


async def update_user(conn: AsyncConnection, user_id: uuid.UUID, changes: dict) -> sa.Row:
    """Apply `changes` to an existing user; EmailTaken if the new email belongs to another user."""
    statement = (
        sa.update(users)
        .where(users.c.id == user_id)
        .values(**changes, updated_at=sa.func.now())
        .returning(users)
    )
    try:
        async with conn.begin_nested():  # a clash rolls back to here, not the whole request
            row = (await conn.execute(statement)).first()
    except sa.exc.IntegrityError as exc:
        if violated_constraint(exc) == EMAIL_KEY:
            raise EmailTaken(changes["email"]) from exc
        raise
    if row is None:
        raise UserNotFound(user_id)
    return row


async def delete_user(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    deleted = await conn.execute(
        sa.delete(users).where(users.c.id == user_id).returning(users.c.id)
    )
    if deleted.first() is None:
        raise UserNotFound(user_id)


async def add_to_stats(conn: AsyncConnection, user_id: uuid.UUID, orders: int, cents: int) -> None:
    """Add to (or, negative, take from) a user's stats in one atomic statement.

    UserNotFound if there is no such user; StatsUnderflow if the result would be negative.
    """
    updated = await _ADD_TO_STATS.first(conn, user_id=user_id, orders=orders, cents=cents)
    if updated is None:
        # Checked in the database rather than by catching the CHECK violation: an error would
        # abort the whole transaction, inbox row included.
        if await fetch_user(conn, user_id) is None:
            raise UserNotFound(user_id)
        raise StatsUnderflow(user_id)
