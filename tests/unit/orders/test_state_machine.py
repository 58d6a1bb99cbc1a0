"""The order state machine: every allowed and every refused transition, one test each."""

from __future__ import annotations

import itertools

import pytest

from orders.domain import (
    REFUND_REASON,
    RULES,
    Decision,
    Event,
    Order,
    OrderStatus,
    Outcome,
    Owed,
    Trigger,
    decide,
)

pytestmark = pytest.mark.unit

S, T = OrderStatus, Trigger

ALLOWED = {
    (S.PENDING_PAYMENT, T.PAYMENT_SUCCEEDED): (S.PAID, Owed.ORDER_PAID),
    (S.PENDING_PAYMENT, T.PAYMENT_FAILED): (S.PAYMENT_FAILED, Owed.ORDER_CANCELLED),
    (S.PENDING_PAYMENT, T.CANCEL): (S.CANCELLED, Owed.ORDER_CANCELLED),
    (S.PAID, T.PAYMENT_REFUNDED): (S.REFUNDED, Owed.ORDER_REFUNDED),
}
# The compensation: a payment that succeeded after the cancel is refunded, and the refund ends it.
COMPENSATION = {(S.CANCELLED, T.PAYMENT_SUCCEEDED), (S.CANCELLED, T.PAYMENT_REFUNDED)}
REFUSED = sorted(set(itertools.product(S, T)) - ALLOWED.keys() - COMPENSATION)


def _id(pair) -> str:
    status, trigger = pair
    return f"{status}--{trigger}"


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=_id)
def test_allowed_transition_moves_the_order_and_owes_its_event(pair):
    status, trigger = pair
    decision = decide(Order(status), Event(trigger, reason="r", payment_id="p"))
    assert (decision.status, decision.outcome, decision.owes) == (*ALLOWED[pair][:1],
            Outcome.APPLIED, ALLOWED[pair][1])  # fmt: skip
    assert decision.writes


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_refused_transition_leaves_the_order_alone_and_owes_nothing(pair):
    status, trigger = pair
    decision = decide(Order(status), Event(trigger))
    assert decision == Decision(status, Outcome.IGNORED)
    assert not decision.writes


def test_the_cases_above_cover_every_rule_and_every_pair():
    assert set(RULES) == ALLOWED.keys() | COMPENSATION
    assert len(ALLOWED) + len(COMPENSATION) + len(REFUSED) == len(S) * len(T)


def test_a_refunded_order_and_a_failed_payment_are_final():
    for status, trigger in itertools.product((S.REFUNDED, S.PAYMENT_FAILED), T):
        assert decide(Order(status), Event(trigger)).outcome is Outcome.IGNORED


def test_what_is_written_comes_from_the_event():
    paid = decide(Order(S.PENDING_PAYMENT), Event(T.PAYMENT_SUCCEEDED, payment_id="pay-1"))
    failed = decide(Order(S.PENDING_PAYMENT), Event(T.PAYMENT_FAILED, reason="card_declined"))
    cancelled = decide(Order(S.PENDING_PAYMENT), Event(T.CANCEL, reason="user_deleted"))
    assert paid.changes == {"payment_id": "pay-1"}
    assert failed.changes == {"cancel_reason": "card_declined"}
    assert cancelled.changes == {"cancel_reason": "user_deleted"}


def test_payment_for_a_cancelled_order_keeps_it_cancelled_and_asks_for_a_refund_once():
    event = Event(T.PAYMENT_SUCCEEDED, payment_id="pay-1")
    first = decide(Order(S.CANCELLED), event)
    assert (first.status, first.outcome, first.owes) == (
        S.CANCELLED, Outcome.COMPENSATE, Owed.REFUND_REQUESTED
    )  # fmt: skip
    assert first.changes == {"payment_id": "pay-1", "refund_requested": True}
    assert REFUND_REASON == "order_cancelled"
    # A second success report for the same payment must not refund twice.
    again = decide(Order(S.CANCELLED, refund_requested=True), event)
    assert again == Decision(S.CANCELLED, Outcome.IGNORED)


def test_the_refund_asked_for_ends_the_compensation_normally():
    ended = decide(Order(S.CANCELLED, refund_requested=True), Event(T.PAYMENT_REFUNDED))
    assert ended == Decision(S.CANCELLED, Outcome.COMPENSATED)
    assert not ended.writes and ended.owes is None


def test_a_refund_nobody_asked_for_is_ignored():
    assert decide(Order(S.CANCELLED), Event(T.PAYMENT_REFUNDED)).outcome is Outcome.IGNORED
