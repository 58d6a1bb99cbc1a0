"""The Kafka retry policy: how many attempts, and the wait before each."""

from __future__ import annotations

import pytest

from shared.kafka import KafkaRetry

pytestmark = pytest.mark.unit


def test_waits_follow_the_backoff_and_the_last_one_repeats():
    retry = KafkaRetry(attempts=5, backoff=(0.2, 1.0, 5.0))
    assert [retry.delay_after(n) for n in range(1, 5)] == [0.2, 1.0, 5.0, 5.0]


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"backoff": ()}])
def test_a_policy_that_could_never_handle_a_record_is_refused(bad):
    with pytest.raises(ValueError):
        KafkaRetry(**bad)
