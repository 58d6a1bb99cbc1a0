"""Payments' state machine, free of I/O: what each provider report or command does to a payment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class PaymentStatus(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    AMOUNT_MISMATCH = "amount_mismatch"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


S = PaymentStatus

# Every move a payment can make; anything else is recorded and ignored.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.AWAITING_CONFIRMATION: frozenset({S.SUCCEEDED, S.FAILED, S.AMOUNT_MISMATCH}),
    S.SUCCEEDED: frozenset({S.REFUND_PENDING, S.REFUNDED}),
    S.REFUND_PENDING: frozenset({S.REFUNDED}),
    S.FAILED: frozenset(),
    S.AMOUNT_MISMATCH: frozenset(),
    S.REFUNDED: frozenset(),
}


@dataclass(frozen=True)
class Payment:
    """What the rules need to know about a payment."""

    status: PaymentStatus
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class ProviderReport:
    """What the payment provider says happened (a verified webhook)."""

    type: str  # payment.succeeded | payment.failed | payment.refunded
    amount_cents: int
    currency: str
    provider_payment_id: str = ""
    failure_reason: str | None = None


class Owed(StrEnum):
    """The event orders is owed when a payment settles."""

    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"


DECLINED = "declined by the provider"  # a failure report that gives no reason
# An amount mismatch is not a payment: orders learns it as a failure with this reason.
AMOUNT_MISMATCH_REASON = "amount_mismatch"


@dataclass(frozen=True)
class Decision:
    """The status to move to, or None when the report does not fit; `note` says why.

    `changes` are written on the payment with its status; `owes` is the event orders is owed,
    with `reason` for a failure.
    """

    status: PaymentStatus | None
    note: str
    changes: Mapping[str, object] = field(default_factory=dict)
    owes: Owed | None = None
    reason: str | None = None

    @property
    def ignored(self) -> bool:
        return self.status is None

    @property
    def outcome(self) -> Literal["applied", "ignored"]:
        """How the webhook that led here is settled."""
        return "ignored" if self.ignored else "applied"


def _move(current: PaymentStatus, target: PaymentStatus, note: str, **then) -> Decision:
    if target in TRANSITIONS[current]:
        return Decision(target, note, **then)
    return Decision(None, f"ignored: payment is {current.value}, cannot become {target.value}")


def on_provider_report(payment: Payment, report: ProviderReport) -> Decision:
    """Apply a provider report; a success for another amount or currency is a mismatch."""
    provider_id = {"provider_payment_id": report.provider_payment_id}
    if report.type == "payment.succeeded":
        if (report.amount_cents, report.currency) != (payment.amount_cents, payment.currency):
            note = (
                f"amount mismatch: requested {payment.amount_cents} {payment.currency}, "
                f"provider reported {report.amount_cents} {report.currency}"
            )
            changes = provider_id | {"failure_reason": note}
            return _move(payment.status, S.AMOUNT_MISMATCH, note, changes=changes,
                         owes=Owed.PAYMENT_FAILED, reason=AMOUNT_MISMATCH_REASON)  # fmt: skip
        return _move(payment.status, S.SUCCEEDED, "succeeded", changes=provider_id,
                     owes=Owed.PAYMENT_SUCCEEDED)  # fmt: skip
    if report.type == "payment.failed":
        reason = report.failure_reason or DECLINED
        return _move(payment.status, S.FAILED, "failed",
                     changes=provider_id | {"failure_reason": reason},
                     owes=Owed.PAYMENT_FAILED, reason=reason)  # fmt: skip
    if report.type == "payment.refunded":
        # A refund keeps the payment's own provider id.
        return _move(payment.status, S.REFUNDED, "refunded", owes=Owed.PAYMENT_REFUNDED)
    return Decision(None, f"ignored: unknown report {report.type!r}")


def on_refund_requested(payment: Payment) -> Decision:
    """Orders asks for a refund: a succeeded payment waits for the provider's refund (no event)."""
    return _move(payment.status, S.REFUND_PENDING, "refund requested")
