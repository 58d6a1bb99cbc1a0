"""Orders' rules, free of I/O: the order state machine, money and the request fingerprint."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Trigger(StrEnum):
    """What can happen to an order: a cancel request, or an event from payments."""

    CANCEL = "cancel"  # asked for over HTTP, or the user was deleted
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"


class Outcome(StrEnum):
    APPLIED = "applied"  # the order moved and owes the matching event
    COMPENSATE = "compensate"  # the order stays, but the money taken must be given back
    COMPENSATED = "compensated"  # the refund asked for completed: the compensation's normal end
    IGNORED = "ignored"  # does not fit the state: recorded, acknowledged, never retried


class Owed(StrEnum):
    """The message an order owes after a decision."""

    ORDER_PAID = "order.paid"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REFUNDED = "order.refunded"
    REFUND_REQUESTED = "payment.refund_requested"


# Why orders were cancelled, as `order.cancelled` and the order itself say; and why a refund is asked.
CANCELLED_ON_REQUEST = "cancelled_on_request"
USER_DELETED = "user_deleted"
REFUND_REASON = "order_cancelled"


@dataclass(frozen=True)
class Order:
    """What the rules need to know about an order."""

    status: OrderStatus
    refund_requested: bool = False


@dataclass(frozen=True)
class Event:
    """Something that happened to an order: a cancel request, or an event from payments."""

    trigger: Trigger
    reason: str | None = None  # why it is cancelled, or why the payment failed
    payment_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """Where the order goes, what is written on it besides its status, and what it owes."""

    status: OrderStatus
    outcome: Outcome
    owes: Owed | None = None
    changes: Mapping[str, object] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.outcome in (Outcome.APPLIED, Outcome.COMPENSATE)


S, T = OrderStatus, Trigger
RULES: dict[tuple[OrderStatus, Trigger], Decision] = {
    (S.PENDING_PAYMENT, T.PAYMENT_SUCCEEDED): Decision(S.PAID, Outcome.APPLIED, Owed.ORDER_PAID),
    (S.PENDING_PAYMENT, T.PAYMENT_FAILED): Decision(
        S.PAYMENT_FAILED, Outcome.APPLIED, Owed.ORDER_CANCELLED
    ),
    (S.PENDING_PAYMENT, T.CANCEL): Decision(S.CANCELLED, Outcome.APPLIED, Owed.ORDER_CANCELLED),
    (S.PAID, T.PAYMENT_REFUNDED): Decision(S.REFUNDED, Outcome.APPLIED, Owed.ORDER_REFUNDED),
    # The payment went through after the order was cancelled: it stays cancelled, refund it.
    (S.CANCELLED, T.PAYMENT_SUCCEEDED): Decision(
        S.CANCELLED, Outcome.COMPENSATE, Owed.REFUND_REQUESTED
    ),
    # ...and that refund completed: the order stays cancelled and owes nothing more.
    (S.CANCELLED, T.PAYMENT_REFUNDED): Decision(S.CANCELLED, Outcome.COMPENSATED),
}


def decide(order: Order, event: Event) -> Decision:
    """Where `event` takes `order`; anything not in RULES leaves it where it is."""
    rule = RULES.get((order.status, event.trigger))
    if rule is None or _refund_mismatch(order, rule):
        return Decision(order.status, Outcome.IGNORED)
    if rule.outcome is Outcome.COMPENSATE:
        return replace(rule, changes={"payment_id": event.payment_id, "refund_requested": True})
    if rule.outcome is not Outcome.APPLIED:
        return rule
    if event.trigger is T.PAYMENT_SUCCEEDED:
        return replace(rule, changes={"payment_id": event.payment_id})
    if event.trigger in (T.CANCEL, T.PAYMENT_FAILED):
        return replace(rule, changes={"cancel_reason": event.reason})
    return rule


def _refund_mismatch(order: Order, rule: Decision) -> bool:
    # Once per order: a second success report must not refund twice; a refund nobody asked
    # for is not the end of a compensation.
    if rule.outcome is Outcome.COMPENSATE:
        return order.refund_requested
    return rule.outcome is Outcome.COMPENSATED and not order.refund_requested


@dataclass(frozen=True)
class Item:
    sku: str
    quantity: int
    unit_price_cents: int


def total_cents(items: Sequence[Item]) -> int:
    """Money is integer minor units, so the total is exact."""
    return sum(item.quantity * item.unit_price_cents for item in items)


def fingerprint(user_id: uuid.UUID, currency: str, items: Sequence[Item]) -> str:
    """A hash of what was asked for, independent of JSON spacing and key order."""
    canonical = {
        "user_id": str(user_id),
        "currency": currency,
        "items": [[i.sku, i.quantity, i.unit_price_cents] for i in items],
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


class OrderNotFound(Exception):
    """No order with that id."""


class NotCancellable(Exception):
    """Only an order still waiting for its payment can be cancelled."""


class UnknownUser(Exception):
    """The users service does not know the user (never existed, or deleted)."""


class UsersUnavailable(Exception):
    """The users service could not answer; nothing was stored."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used for a different request."""
