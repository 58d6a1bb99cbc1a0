"""Everything orders does, for HTTP requests and for consumed messages, registered at the bottom."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from types import SimpleNamespace
from typing import Protocol

import structlog

from orders import db
from orders.domain import (
    CANCELLED_ON_REQUEST,
    REFUND_REASON,
    USER_DELETED,
    Decision,
    Event,
    IdempotencyKeyReused,
    Item,
    NotCancellable,
    Order,
    OrderNotFound,
    OrderStatus,
    Outcome,
    Owed,
    Trigger,
    decide,
    fingerprint,
    total_cents,
)
from orders.messages import (
    OrderCancelled,
    OrderCreated,
    OrderMessage,
    OrderPaid,
    OrderRefunded,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundRequested,
    PaymentRequested,
    PaymentSucceeded,
    UserDeleted,
)
from shared.db import Connection, Database, Row, as_updated
from shared.envelope import Envelope
from shared.handlers import Handler
from shared.outbox import in_turn

log = structlog.get_logger(__name__)


class UserDirectory(Protocol):
    """What orders needs to know about users (the real one asks the users service over HTTP)."""

    async def ensure_exists(
        self, user_id: uuid.UUID, correlation_id: str | None = None
    ) -> None: ...


async def place_order(
    database: Database,
    users: UserDirectory,
    *,
    user_id: uuid.UUID,
    currency: str,
    items: Sequence[Item],
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
) -> tuple[Row, bool]:
    """Store an order with `order.created` and `payment.requested`; (order, True) on a replay.

    Users is asked before the order is written, so no connection waits on another service.
    """
    request_hash = fingerprint(user_id, currency, items)
    if idempotency_key and (earlier := await _earlier(database, idempotency_key, request_hash)):
        return earlier, True
    await users.ensure_exists(user_id, correlation_id)
    try:
        # One statement writes the order with all that goes with it: no transaction to open.
        async with database.autocommit() as conn:
            order = await _store(conn, user_id, currency, items, correlation_id,
                                 key=idempotency_key, request_hash=request_hash)  # fmt: skip
    except Exception as exc:
        # A concurrent request with the same key committed first; this one wrote nothing.
        if not (idempotency_key and db.is_key_clash(exc)):
            raise
        return await _earlier(database, idempotency_key, request_hash), True
    return order, False


async def _earlier(database: Database, key: str, request_hash: str) -> Row | None:
    # Outside a transaction: the key's order was committed with it, so two reads are enough.
    async with database.autocommit() as conn:
        stored = await db.find_key(conn, key)
        if stored is None:
            return None
        if stored.request_hash != request_hash:
            raise IdempotencyKeyReused(key)
        return await db.fetch_order(conn, stored.order_id)


async def _store(conn, user_id, currency, items, correlation_id, *, key, request_hash) -> Row:
    order_id, total, lines = uuid.uuid4(), total_cents(items), [asdict(i) for i in items]
    status = OrderStatus.PENDING_PAYMENT
    created = OrderCreated(
        order_id=order_id, user_id=user_id, total_cents=total, currency=currency, items=lines
    )
    requested = PaymentRequested(
        order_id=order_id, user_id=user_id, amount_cents=total, currency=currency
    )
    # payment.requested is caused by order.created: one correlation id from here to payments.
    owed = in_turn(created, requested, correlation_id=correlation_id)
    return await db.insert_order(conn, order_id, user_id, status, total, currency, lines,
                                 key=key, request_hash=request_hash, owed=owed)  # fmt: skip


async def _happened(
    conn: Connection,
    order_id: uuid.UUID,
    event: Event,
    *,
    caused_by: Envelope | None = None,
    correlation_id: str | None = None,
) -> tuple[Row, Decision] | None:
    """Load the order, decide, and write the decision with its history line and the message it
    owes, in one statement.

    Returns the order as it is now and the decision; None for an order that does not exist.
    """
    message_id = caused_by.id if caused_by else None
    order = await db.fetch_order(conn, order_id, lock=True)
    if order is None:
        await db.record(conn, order_id, event.trigger, "unknown_order", message_id=message_id)
        log.warning("event for unknown order recorded and ignored",
                    order_id=str(order_id), trigger=str(event.trigger))  # fmt: skip
        return None
    before = OrderStatus(order.status)
    decision = decide(Order(before, order.refund_requested_at is not None), event)
    line = db.HistoryLine(
        event=event.trigger, outcome=decision.outcome, message_id=message_id, from_status=before
    )
    if decision.writes:
        # Only a move owes a message (domain.RULES), and it goes into the outbox in the move's
        # own statement: built first, from the order as the move will leave it.
        owed = []
        if decision.owes is not None:
            moved = as_updated(order, status=decision.status, **decision.changes)
            message = _message(decision.owes, moved)
            owed = in_turn(message, caused_by=caused_by, correlation_id=correlation_id)
        order = await db.update_order(conn, order_id, line, status=decision.status, owed=owed,
                                      **decision.changes)  # fmt: skip
    else:
        await db.record(conn, order_id, **line._asdict(), to_status=decision.status)
    log_line = log.warning if decision.outcome is Outcome.IGNORED else log.info
    log_line(f"order event {decision.outcome}", order_id=str(order_id), trigger=str(event.trigger),
             message_id=message_id, status=before, new_status=decision.status)  # fmt: skip
    return order, decision


def _message(owes: Owed, order: Row | SimpleNamespace) -> OrderMessage:
    """The message `owes` names, filled from the order as the move leaves it."""
    if owes is Owed.ORDER_PAID:
        return OrderPaid(order_id=order.id, user_id=order.user_id, total_cents=order.total_cents,
                         currency=order.currency, payment_id=order.payment_id)  # fmt: skip
    if owes is Owed.ORDER_CANCELLED:
        return OrderCancelled(order_id=order.id, user_id=order.user_id, reason=order.cancel_reason)
    if owes is Owed.ORDER_REFUNDED:
        return OrderRefunded(order_id=order.id, user_id=order.user_id,
                             total_cents=order.total_cents, currency=order.currency)  # fmt: skip
    return PaymentRefundRequested(order_id=order.id, reason=REFUND_REASON)


async def cancel_order(
    conn: Connection, order_id: uuid.UUID, *, correlation_id: str | None = None
) -> Row:
    """Cancel an order still waiting for its payment; NotCancellable otherwise."""
    cancel = Event(Trigger.CANCEL, reason=CANCELLED_ON_REQUEST)
    happened = await _happened(conn, order_id, cancel, correlation_id=correlation_id)
    if happened is None:
        raise OrderNotFound(order_id)
    order, decision = happened
    if decision.outcome is not Outcome.APPLIED:
        raise NotCancellable(order.status)  # the request's transaction, and its record, roll back
    return order


async def on_payment_succeeded(conn: Connection, envelope: Envelope) -> None:
    """Paid; or, for an order cancelled meanwhile, ask payments to give the money back."""
    paid = PaymentSucceeded.model_validate(envelope.data)
    event = Event(Trigger.PAYMENT_SUCCEEDED, payment_id=paid.payment_id)
    await _happened(conn, paid.order_id, event, caused_by=envelope)


async def on_payment_failed(conn: Connection, envelope: Envelope) -> None:
    """The payment failed: the order is over, and says why."""
    failed = PaymentFailed.model_validate(envelope.data)
    event = Event(Trigger.PAYMENT_FAILED, reason=failed.reason)
    await _happened(conn, failed.order_id, event, caused_by=envelope)


async def on_payment_refunded(conn: Connection, envelope: Envelope) -> None:
    """A paid order was refunded; a cancelled one whose refund completed stays cancelled."""
    refunded = PaymentRefunded.model_validate(envelope.data)
    await _happened(conn, refunded.order_id, Event(Trigger.PAYMENT_REFUNDED), caused_by=envelope)


async def on_user_deleted(conn: Connection, envelope: Envelope) -> None:
    """A deleted user's orders still waiting for payment are cancelled."""
    deleted = UserDeleted.model_validate(envelope.data)
    cancel = Event(Trigger.CANCEL, reason=USER_DELETED)
    for order in await db.pending_orders_of(conn, deleted.user_id):
        await _happened(conn, order.id, cancel, caused_by=envelope)


# Every message orders consumes, and what it does with it.
PAYMENT_EVENT_HANDLERS: dict[str, Handler] = {
    "payment.succeeded": on_payment_succeeded,
    "payment.failed": on_payment_failed,
    "payment.refunded": on_payment_refunded,
}
USERS_EVENT_HANDLERS: dict[str, Handler] = {
    "user.deleted": on_user_deleted,
}
