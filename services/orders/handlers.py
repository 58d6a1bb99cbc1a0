"""Everything orders does, for HTTP requests and for consumed messages, registered at the bottom."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orders import db
from orders.domain import (
    IdempotencyKeyReused,
    Item,
    NotCancellable,
    OrderNotFound,
    OrderStatus,
    Outcome,
    Trigger,
    decide,
    fingerprint,
    total_cents,
)
from orders.messages import (
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundRequested,
    PaymentRequested,
    PaymentSucceeded,
    Produced,
    UserDeleted,
    order_message,
)
from shared.db import reading
from shared.envelope import Envelope
from shared.outbox import add_all_to_outbox, add_to_outbox

log = structlog.get_logger(__name__)

USER_DELETED = "user_deleted"
CANCELLED_ON_REQUEST = "cancelled_on_request"
REFUND_REASON = "order_cancelled"


class UserDirectory(Protocol):
    """What orders needs to know about users (the real one asks the users service over HTTP)."""

    async def ensure_exists(
        self, user_id: uuid.UUID, correlation_id: str | None = None
    ) -> None: ...


async def _owe(session: AsyncSession, payload: Produced, **cause) -> Envelope:
    envelope = order_message(payload, **cause)
    await add_to_outbox(session, db.outbox, payload.CHANNEL, envelope)
    return envelope


async def place_order(
    sessions: async_sessionmaker[AsyncSession],
    users: UserDirectory,
    *,
    user_id: uuid.UUID,
    currency: str,
    items: Sequence[Item],
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
) -> tuple[sa.Row, bool]:
    """Store an order with `order.created` and `payment.requested`; (order, True) on a replay.

    Users is asked before any transaction opens, so no connection waits on another service.
    """
    request_hash = fingerprint(user_id, currency, items)
    if idempotency_key and (earlier := await _earlier(sessions, idempotency_key, request_hash)):
        return earlier, True
    await users.ensure_exists(user_id, correlation_id)
    try:
        async with sessions.begin() as session:
            order = await _store(session, user_id, currency, items, correlation_id)
            if idempotency_key:
                await db.remember_key(session, idempotency_key, request_hash, order.id)
    except sa.exc.IntegrityError as exc:
        # A concurrent request with the same key committed first; this one rolled back whole.
        if not (idempotency_key and db.is_key_clash(exc)):
            raise
        return await _earlier(sessions, idempotency_key, request_hash), True
    return order, False


async def _earlier(sessions, key: str, request_hash: str) -> sa.Row | None:
    # Outside a transaction: the key's order was committed with it, so two reads are enough.
    async with reading(sessions) as session:
        stored = await db.find_key(session, key)
        if stored is None:
            return None
        if stored.request_hash != request_hash:
            raise IdempotencyKeyReused(key)
        return await db.fetch_order(session, stored.order_id)


async def _store(session, user_id, currency, items, correlation_id) -> sa.Row:
    order_id, total, lines = uuid.uuid4(), total_cents(items), [asdict(i) for i in items]
    status = OrderStatus.PENDING_PAYMENT
    order = await db.insert_order(session, order_id, user_id, status, total, currency, lines)
    await db.record(session, order_id, "placed", Outcome.APPLIED, to_status=status)
    created = OrderCreated(
        order_id=order_id, user_id=user_id, total_cents=total, currency=currency, items=lines
    )
    requested = PaymentRequested(
        order_id=order_id, user_id=user_id, amount_cents=total, currency=currency
    )
    # payment.requested is caused by order.created: one correlation id from here to payments.
    cause = order_message(created, correlation_id=correlation_id)
    owed = [
        (created.CHANNEL, cause),
        (requested.CHANNEL, order_message(requested, caused_by=cause)),
    ]
    await add_all_to_outbox(session, db.outbox, owed)
    return order


async def _apply(
    session: AsyncSession,
    order_id: uuid.UUID,
    trigger: Trigger,
    envelope: Envelope | None = None,
    **changes,
) -> tuple[sa.Row, Outcome] | None:
    """Run the state machine on the locked order and write down what happened, whatever it was."""
    order = await db.fetch_order(session, order_id, lock=True)
    message_id = envelope.id if envelope else None
    if order is None:
        await db.record(session, order_id, trigger, "unknown_order", message_id=message_id)
        log.warning(
            "event for unknown order recorded and ignored",
            order_id=str(order_id),
            trigger=str(trigger),
        )
        return None
    decision = decide(OrderStatus(order.status), trigger)
    if decision.outcome is Outcome.APPLIED:
        await db.update_order(session, order_id, status=decision.status, **changes)
    await db.record(
        session,
        order_id,
        trigger,
        decision.outcome,
        message_id=message_id,
        from_status=order.status,
        to_status=decision.status,
    )
    log_line = log.warning if decision.outcome is Outcome.IGNORED else log.info
    log_line(
        f"order event {decision.outcome}",
        order_id=str(order_id),
        trigger=str(trigger),
        message_id=message_id,
        status=order.status,
        new_status=decision.status,
    )
    return order, decision.outcome


async def cancel_order(
    session: AsyncSession, order_id: uuid.UUID, *, correlation_id: str | None = None
) -> sa.Row:
    """Cancel an order still waiting for its payment; NotCancellable otherwise."""
    applied = await _apply(session, order_id, Trigger.CANCEL, cancel_reason=CANCELLED_ON_REQUEST)
    if applied is None:
        raise OrderNotFound(order_id)
    order, outcome = applied
    if outcome is not Outcome.APPLIED:
        raise NotCancellable(order.status)  # the request's transaction, and its record, roll back
    cancelled = OrderCancelled(
        order_id=order.id, user_id=order.user_id, reason=CANCELLED_ON_REQUEST
    )
    await _owe(session, cancelled, correlation_id=correlation_id)
    return await db.fetch_order(session, order_id)


async def on_payment_succeeded(session: AsyncSession, envelope: Envelope) -> None:
    """Paid; or, for an order cancelled meanwhile, ask payments to give the money back."""
    event = PaymentSucceeded.model_validate(envelope.data)
    applied = await _apply(
        session, event.order_id, Trigger.PAYMENT_SUCCEEDED, envelope, payment_id=event.payment_id
    )
    if applied is None:
        return
    order, outcome = applied
    if outcome is Outcome.APPLIED:
        paid = OrderPaid(
            order_id=order.id,
            user_id=order.user_id,
            total_cents=order.total_cents,
            currency=order.currency,
            payment_id=event.payment_id,
        )
        await _owe(session, paid, caused_by=envelope)
    elif outcome is Outcome.COMPENSATE and order.refund_requested_at is None:
        # Once per order: a second success report for the same payment must not refund twice.
        await session.execute(
            sa.update(db.orders)
            .where(db.orders.c.id == order.id)
            .values(refund_requested_at=sa.func.now(), payment_id=event.payment_id)
        )
        refund = PaymentRefundRequested(order_id=order.id, reason=REFUND_REASON)
        await _owe(session, refund, caused_by=envelope)


async def on_payment_failed(session: AsyncSession, envelope: Envelope) -> None:
    """The payment failed: the order is over, and says why."""
    event = PaymentFailed.model_validate(envelope.data)
    applied = await _apply(
        session, event.order_id, Trigger.PAYMENT_FAILED, envelope, cancel_reason=event.reason
    )
    if applied and applied[1] is Outcome.APPLIED:
        order = applied[0]
        cancelled = OrderCancelled(order_id=order.id, user_id=order.user_id, reason=event.reason)
        await _owe(session, cancelled, caused_by=envelope)


async def on_payment_refunded(session: AsyncSession, envelope: Envelope) -> None:
    """A paid order was refunded; a cancelled one whose refund completed stays cancelled."""
    event = PaymentRefunded.model_validate(envelope.data)
    applied = await _apply(session, event.order_id, Trigger.PAYMENT_REFUNDED, envelope)
    if applied and applied[1] is Outcome.APPLIED:
        order = applied[0]
        refunded = OrderRefunded(
            order_id=order.id,
            user_id=order.user_id,
            total_cents=order.total_cents,
            currency=order.currency,
        )
        await _owe(session, refunded, caused_by=envelope)


async def on_user_deleted(session: AsyncSession, envelope: Envelope) -> None:
    """A deleted user's orders still waiting for payment are cancelled."""
    event = UserDeleted.model_validate(envelope.data)
    for order in await db.pending_orders_of(session, event.user_id):
        await _apply(session, order.id, Trigger.CANCEL, envelope, cancel_reason=USER_DELETED)
        cancelled = OrderCancelled(order_id=order.id, user_id=order.user_id, reason=USER_DELETED)
        await _owe(session, cancelled, caused_by=envelope)


# Every message orders consumes, and what it does with it.
PAYMENT_EVENT_HANDLERS = {
    "payment.succeeded": on_payment_succeeded,
    "payment.failed": on_payment_failed,
    "payment.refunded": on_payment_refunded,
}
USERS_EVENT_HANDLERS = {
    "user.deleted": on_user_deleted,
}
