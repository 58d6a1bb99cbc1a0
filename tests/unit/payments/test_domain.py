"""The payment state machine: every allowed move, and every refused one left alone."""

from __future__ import annotations

import pytest

from payments.domain import (
    AMOUNT_MISMATCH_REASON,
    DECLINED,
    TRANSITIONS,
    Owed,
    Payment,
    PaymentStatus,
    ProviderReport,
    on_provider_report,
    on_refund_requested,
)

pytestmark = pytest.mark.unit

S = PaymentStatus
REPORTS = ("payment.succeeded", "payment.failed", "payment.refunded")


def payment(status: PaymentStatus) -> Payment:
    return Payment(status, 4200, "EUR")


def report(type: str, amount_cents: int = 4200, currency: str = "EUR") -> ProviderReport:
    return ProviderReport(type, amount_cents, currency)


# (current status, provider report) -> the status it moves to; every other pair is ignored.
ALLOWED = {
    (S.AWAITING_CONFIRMATION, "payment.succeeded"): S.SUCCEEDED,
    (S.AWAITING_CONFIRMATION, "payment.failed"): S.FAILED,
    (S.SUCCEEDED, "payment.refunded"): S.REFUNDED,
    (S.REFUND_PENDING, "payment.refunded"): S.REFUNDED,
}
EVERY_PAIR = [(status, type) for status in S for type in REPORTS]


@pytest.mark.parametrize(("status", "type"), EVERY_PAIR)
def test_each_report_in_each_status(status, type):
    decision = on_provider_report(payment(status), report(type))

    assert decision.status == ALLOWED.get((status, type))
    assert decision.ignored == ((status, type) not in ALLOWED)
    if decision.ignored:
        assert f"payment is {status.value}" in decision.note


@pytest.mark.parametrize(
    ("amount_cents", "currency"), [(4199, "EUR"), (4201, "EUR"), (4200, "USD"), (0, "EUR")]
)
def test_success_for_another_amount_or_currency_is_a_mismatch(amount_cents, currency):
    decision = on_provider_report(
        payment(S.AWAITING_CONFIRMATION), report("payment.succeeded", amount_cents, currency)
    )

    assert decision.status is S.AMOUNT_MISMATCH
    assert "requested 4200 EUR" in decision.note
    assert f"provider reported {amount_cents} {currency}" in decision.note


def test_a_mismatch_after_the_payment_succeeded_is_ignored():
    decision = on_provider_report(payment(S.SUCCEEDED), report("payment.succeeded", 1))

    assert decision.ignored


@pytest.mark.parametrize("status", list(S))
def test_refund_request_only_moves_a_succeeded_payment(status):
    decision = on_refund_requested(payment(status))

    assert decision.status == (S.REFUND_PENDING if status is S.SUCCEEDED else None)


def test_terminal_states_have_no_way_out():
    terminal = {s for s, targets in TRANSITIONS.items() if not targets}

    assert terminal == {S.FAILED, S.AMOUNT_MISMATCH, S.REFUNDED}
    assert set(TRANSITIONS) == set(S)


def test_an_unknown_report_is_ignored():
    assert on_provider_report(payment(S.AWAITING_CONFIRMATION), report("payment.disputed")).ignored


# What each settled report writes on the payment, and the event orders is owed for it.
def test_a_success_keeps_the_providers_id_and_owes_payment_succeeded():
    decision = on_provider_report(
        payment(S.AWAITING_CONFIRMATION), ProviderReport("payment.succeeded", 4200, "EUR", "psp_1")
    )
    assert decision.changes == {"provider_payment_id": "psp_1"}
    assert (decision.owes, decision.outcome) == (Owed.PAYMENT_SUCCEEDED, "applied")


def test_a_failure_writes_its_reason_and_tells_orders_the_same_reason():
    told = ProviderReport("payment.failed", 4200, "EUR", "psp_1", "card_declined")
    silent = ProviderReport("payment.failed", 4200, "EUR", "psp_1")
    decision = on_provider_report(payment(S.AWAITING_CONFIRMATION), told)
    assert decision.changes == {"provider_payment_id": "psp_1", "failure_reason": "card_declined"}
    assert (decision.owes, decision.reason) == (Owed.PAYMENT_FAILED, "card_declined")
    unexplained = on_provider_report(payment(S.AWAITING_CONFIRMATION), silent)
    assert unexplained.reason == unexplained.changes["failure_reason"] == DECLINED


def test_an_amount_mismatch_is_told_to_orders_as_a_failure_it_can_tell_apart():
    decision = on_provider_report(
        payment(S.AWAITING_CONFIRMATION), ProviderReport("payment.succeeded", 1, "EUR", "psp_1")
    )
    assert decision.status is S.AMOUNT_MISMATCH
    assert (decision.owes, decision.reason) == (Owed.PAYMENT_FAILED, AMOUNT_MISMATCH_REASON)
    assert decision.changes["failure_reason"] == decision.note


def test_a_refund_keeps_the_payments_own_provider_id_and_owes_payment_refunded():
    decision = on_provider_report(
        payment(S.SUCCEEDED), ProviderReport("payment.refunded", 4200, "EUR", "psp_refund")
    )
    assert decision.changes == {}
    assert decision.owes is Owed.PAYMENT_REFUNDED


def test_a_refund_request_owes_nothing_until_the_provider_refunds():
    decision = on_refund_requested(payment(S.SUCCEEDED))
    assert (decision.status, decision.owes) == (S.REFUND_PENDING, None)


def test_an_ignored_report_writes_nothing_and_owes_nothing():
    decision = on_provider_report(payment(S.FAILED), report("payment.succeeded"))
    assert (decision.outcome, decision.changes, decision.owes) == ("ignored", {}, None)
