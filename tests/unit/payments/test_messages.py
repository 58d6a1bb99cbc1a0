"""What payments publishes and what it accepts from the provider, without servers."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from payments.messages import (
    PaymentFailed,
    PaymentSucceeded,
    ProviderEvent,
)
from shared.envelope import new_envelope
from switchyard.webhook_sender import build_event, encode_event

pytestmark = pytest.mark.unit

ORDER = uuid.uuid4()
PAYMENT = uuid.uuid4()


def test_a_payment_event_is_keyed_and_routed_by_order_and_type():
    payload = PaymentSucceeded(
        payment_id=PAYMENT,
        order_id=ORDER,
        amount_cents=4200,
        currency="EUR",
        provider_payment_id="psp_1",
    )

    event = payload.envelope(correlation_id="corr-1", causation_id="msg_1")
    channel = payload.CHANNEL

    assert (event.type, event.subject, event.source) == (
        "payment.succeeded",
        str(ORDER),
        "switchyard/payments",
    )
    assert (event.correlationid, event.causationid) == ("corr-1", "msg_1")
    assert (channel.broker, channel.name, channel.routing_key) == (
        "rabbit",
        "payments.events",
        "payment.succeeded",
    )
    assert event.data == {
        "payment_id": str(PAYMENT),
        "order_id": str(ORDER),
        "amount_cents": 4200,
        "currency": "EUR",
        "provider_payment_id": "psp_1",
    }


def test_an_event_caused_by_a_command_follows_its_correlation():
    command = new_envelope(type="payment.requested", source="orders", subject=str(ORDER), data={})

    event = PaymentFailed(payment_id=PAYMENT, order_id=ORDER, reason="declined").envelope(
        caused_by=command, causation_id="msg_ignored"
    )

    assert (event.correlationid, event.causationid) == (command.correlationid, command.id)


def test_the_senders_events_are_what_payments_reads():
    for type in ("payment.succeeded", "payment.failed", "payment.refunded"):
        body = encode_event(build_event(type, str(ORDER), 4200, "eur", failure_reason="x"))

        event = ProviderEvent.model_validate_json(body)

        assert (event.type, event.data.order_id, event.data.currency) == (type, ORDER, "EUR")


def test_unknown_provider_fields_are_ignored():
    event = build_event("payment.succeeded", str(ORDER), 1)
    event["livemode"] = False
    event["data"]["card"] = {"last4": "4242"}

    assert ProviderEvent.model_validate_json(json.dumps(event)).data.amount_cents == 1


def test_a_number_sent_as_text_is_refused():
    event = build_event("payment.succeeded", str(ORDER), 1)
    event["data"]["amount_cents"] = "1"

    with pytest.raises(ValidationError, match="amount_cents"):
        ProviderEvent.model_validate_json(json.dumps(event))
