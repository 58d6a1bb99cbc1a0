"""The order state machine: every allowed and every refused transition, one test each."""

from __future__ import annotations

import itertools

import pytest

from orders.domain import RULES, Decision, OrderStatus, Outcome, Trigger, decide

pytestmark = pytest.mark.unit

S, T = OrderStatus, Trigger

ALLOWED = {
    (S.PENDING_PAYMENT, T.PAYMENT_SUCCEEDED): S.PAID,
    (S.PENDING_PAYMENT, T.PAYMENT_FAILED): S.PAYMENT_FAILED,
    (S.PENDING_PAYMENT, T.CANCEL): S.CANCELLED,
    (S.PAID, T.PAYMENT_REFUNDED): S.REFUNDED,
}
COMPENSATED = {(S.CANCELLED, T.PAYMENT_SUCCEEDED)}
REFUSED = sorted(set(itertools.product(S, T)) - ALLOWED.keys() - COMPENSATED)


def _id(pair) -> str:
    status, trigger = pair
    return f"{status}--{trigger}"


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=_id)
def test_allowed_transition_moves_the_order(pair):
    status, trigger = pair
    assert decide(status, trigger) == Decision(ALLOWED[pair], Outcome.APPLIED)


def test_payment_for_a_cancelled_order_keeps_it_cancelled_and_compensates():
    assert decide(S.CANCELLED, T.PAYMENT_SUCCEEDED) == Decision(S.CANCELLED, Outcome.COMPENSATE)


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_refused_transition_leaves_the_order_alone(pair):
    status, trigger = pair
    assert decide(status, trigger) == Decision(status, Outcome.IGNORED)


def test_the_cases_above_cover_every_rule_and_every_pair():
    assert set(RULES) == ALLOWED.keys() | COMPENSATED
    assert len(ALLOWED) + len(COMPENSATED) + len(REFUSED) == len(S) * len(T)


def test_a_refunded_order_and_a_failed_payment_are_final():
    for status in (S.REFUNDED, S.PAYMENT_FAILED):
        assert all(decide(status, t).outcome is Outcome.IGNORED for t in T)


def test_a_completed_refund_leaves_a_cancelled_order_cancelled():
    assert decide(S.CANCELLED, T.PAYMENT_REFUNDED) == Decision(S.CANCELLED, Outcome.IGNORED)
