"""Payments' state machine, free of I/O: what each provider report or command does to a payment."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class Decision:
    """The status to move to, or None when the report does not fit; `note` says why."""

    status: PaymentStatus | None
    note: str

    @property
    def ignored(self) -> bool:
        return self.status is None


def _move(current: PaymentStatus, target: PaymentStatus, note: str) -> Decision:
    if target in TRANSITIONS[current]:
        return Decision(target, note)
    return Decision(None, f"ignored: payment is {current.value}, cannot become {target.value}")


def on_provider_report(payment: Payment, report: ProviderReport) -> Decision:
    """Apply a provider report; a success for another amount or currency is a mismatch."""
    if report.type == "payment.succeeded":
        if (report.amount_cents, report.currency) != (payment.amount_cents, payment.currency):
            note = (
                f"amount mismatch: requested {payment.amount_cents} {payment.currency}, "
                f"provider reported {report.amount_cents} {report.currency}"
            )
            return _move(payment.status, S.AMOUNT_MISMATCH, note)
        return _move(payment.status, S.SUCCEEDED, "succeeded")
    if report.type == "payment.failed":
        return _move(payment.status, S.FAILED, "failed")
    if report.type == "payment.refunded":
        return _move(payment.status, S.REFUNDED, "refunded")
    return Decision(None, f"ignored: unknown report {report.type!r}")


def on_refund_requested(payment: Payment) -> Decision:
    """Orders asks for a refund: a succeeded payment waits for the provider's refund."""
    return _move(payment.status, S.REFUND_PENDING, "refund requested")
