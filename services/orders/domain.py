"""Orders' rules, free of I/O: the order state machine, money and the request fingerprint."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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
    IGNORED = "ignored"  # does not fit the state: recorded, acknowledged, never retried


@dataclass(frozen=True)
class Decision:
    status: OrderStatus
    outcome: Outcome


S, T = OrderStatus, Trigger
RULES: dict[tuple[OrderStatus, Trigger], Decision] = {
    (S.PENDING_PAYMENT, T.PAYMENT_SUCCEEDED): Decision(S.PAID, Outcome.APPLIED),
    (S.PENDING_PAYMENT, T.PAYMENT_FAILED): Decision(S.PAYMENT_FAILED, Outcome.APPLIED),
    (S.PENDING_PAYMENT, T.CANCEL): Decision(S.CANCELLED, Outcome.APPLIED),
    (S.PAID, T.PAYMENT_REFUNDED): Decision(S.REFUNDED, Outcome.APPLIED),
    # The payment went through after the order was cancelled: it stays cancelled, refund it.
    (S.CANCELLED, T.PAYMENT_SUCCEEDED): Decision(S.CANCELLED, Outcome.COMPENSATE),
}


def decide(status: OrderStatus, trigger: Trigger) -> Decision:
    """Where `trigger` takes an order in `status`; anything not in RULES leaves it where it is."""
    return RULES.get((status, trigger), Decision(status, Outcome.IGNORED))


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
