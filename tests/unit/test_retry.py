"""The retry policy both brokers share: seconds, one retry per delay, then the message is parked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.rabbit import retry_queue
from shared.rabbit.topology import retry_queue_arguments
from shared.retry import RetryPolicy
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit


def test_one_retry_per_delay_then_the_message_is_parked():
    retry = RetryPolicy(delays=(0.2, 1.0))
    assert retry.attempts == 3
    assert [retry.delay_after(n) for n in (1, 2, 3)] == [0.2, 1.0, None]


def test_waits_for_a_server_follow_the_delays_and_the_last_one_repeats():
    retry = RetryPolicy(delays=(0.2, 1.0, 5.0))
    assert [retry.wait(n) for n in range(1, 6)] == [0.2, 1.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("delays", [(), (1.0, 0.0), (-1.0,)], ids=["none", "zero", "negative"])
def test_a_policy_that_could_not_wait_is_refused(delays):
    with pytest.raises(ValueError):
        RetryPolicy(delays)


def test_rabbitmq_turns_each_delay_into_a_queue_ttl_in_milliseconds():
    assert retry_queue("orders.payment-events", 0.05) == "orders.payment-events.retry.50ms"
    assert retry_queue_arguments("q", 25.0)["x-message-ttl"] == 25_000


def test_settings_make_one_policy_per_broker(monkeypatch):
    monkeypatch.setenv("RABBIT_RETRY_DELAYS", "[0.1, 0.2, 0.4]")
    monkeypatch.setenv("KAFKA_RETRY_DELAYS", "[0.05, 0.1]")
    settings = ServiceSettings(_env_file=None)
    assert settings.rabbit_retry == RetryPolicy((0.1, 0.2, 0.4))
    assert settings.kafka_retry == RetryPolicy((0.05, 0.1))


def test_the_defaults_keep_three_kafka_attempts_and_rabbitmq_s_three_tiers(monkeypatch):
    for name in ("RABBIT_RETRY_DELAYS", "KAFKA_RETRY_DELAYS"):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings(_env_file=None)
    assert settings.rabbit_retry.delays == (1.0, 5.0, 25.0)
    assert settings.kafka_retry.attempts == 3


@pytest.mark.parametrize("name", ["rabbit_retry_delays", "kafka_retry_delays"])
@pytest.mark.parametrize("delays", [(), (0.0,)], ids=["none", "zero"])
def test_settings_refuse_delays_that_make_no_policy(name, delays):
    with pytest.raises(ValidationError, match=name.upper()):
        ServiceSettings(_env_file=None, **{name: delays})
