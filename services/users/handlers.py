"""Everything users does, for HTTP requests and for consumed events, registered at the bottom.

Each request's handler works inside the caller's transaction and never commits: the API commits
per request, so a state change and its event commit together. A consumed order event is one
statement that writes its inbox row too (`OneStatement`), committed on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog

from shared.db import Connection, Row
from shared.envelope import Envelope
from shared.errors import PermanentError
from shared.handlers import OneStatement, Registered
from shared.outbox import owe
from users import db
from users.domain import StatsUnderflow, UserNotFound, changed_fields
from users.messages import OrderPaid, OrderRefunded, UserDeleted, UserRegistered, UserUpdated

log = structlog.get_logger(__name__)


async def register_user(
    conn: Connection, *, email: str, name: str, correlation_id: str | None = None
) -> Row:
    """Create a user and owe `user.registered`; a taken email (any case) raises EmailTaken."""
    user = await db.insert_user(conn, user_id=uuid.uuid4(), email=email, name=name)
    registered = UserRegistered(user_id=user.id, email=user.email, name=user.name)
    await owe(conn, db.outbox, registered, correlation_id=correlation_id)
    return user


async def update_user(
    conn: Connection,
    user_id: uuid.UUID,
    changes: dict,
    *,
    correlation_id: str | None = None,
) -> Row:
    """Apply the fields that differ and owe `user.updated`; a change to nothing emits nothing."""
    # Locked, so a concurrent update cannot slip between the comparison and the write.
    user = await db.fetch_user(conn, user_id, for_update=True)
    if user is None:
        raise UserNotFound(user_id)
    changes = changed_fields(user._asdict(), changes)
    if not changes:
        return user
    user = await db.update_user(conn, user_id, changes)
    updated = UserUpdated(user_id=user.id, email=user.email, name=user.name)
    await owe(conn, db.outbox, updated, correlation_id=correlation_id)
    return user


async def delete_user(
    conn: Connection, user_id: uuid.UUID, *, correlation_id: str | None = None
) -> None:
    """Delete the user and owe `user.deleted` (orders cancels the user's open orders)."""
    await db.delete_user(conn, user_id)
    await owe(conn, db.outbox, UserDeleted(user_id=user_id), correlation_id=correlation_id)


async def _count(
    conn: Connection,
    envelope: Envelope,
    inbox_row: Mapping[str, str],
    user_id: uuid.UUID,
    orders: int,
    cents: int,
) -> bool:
    try:
        return await db.count_once(conn, user_id, orders, cents, inbox_row)
    except UserNotFound:
        # Acknowledged, and recorded in the inbox: no retry can make a deleted user exist.
        log.warning("event for unknown user skipped", type=envelope.type, user_id=str(user_id))
        return True
    except StatsUnderflow as exc:
        # It would fail on every retry: park it in the dead-letter topic for a person to look at.
        raise PermanentError(
            f"{envelope.type} would take the stats of user {user_id} below zero"
        ) from exc


async def on_order_paid(conn: Connection, envelope: Envelope, inbox_row: Mapping[str, str]) -> bool:
    """A paid order counts towards the user's lifetime stats."""
    paid = OrderPaid.model_validate(envelope.data)
    return await _count(conn, envelope, inbox_row, paid.user_id, 1, paid.total_cents)


async def on_order_refunded(
    conn: Connection, envelope: Envelope, inbox_row: Mapping[str, str]
) -> bool:
    """A refund takes the order back out of the stats."""
    refunded = OrderRefunded.model_validate(envelope.data)
    return await _count(conn, envelope, inbox_row, refunded.user_id, -1, -refunded.total_cents)


# Every event users consumes, and what it does with it; other types on the topic go unread.
ORDERS_EVENT_HANDLERS: dict[str, Registered] = {
    "order.paid": OneStatement(on_order_paid),
    "order.refunded": OneStatement(on_order_refunded),
}
