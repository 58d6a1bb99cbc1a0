"""The PSP event builder and poster shared by the CLI, the demo and the load generator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from shared.webhooks import DEVELOPMENT_SECRET, WebhookVerifier
from switchyard.webhook_sender import (
    build_event,
    encode_event,
    send_event,
    send_event_sync,
    signing_secret,
)

pytestmark = pytest.mark.unit

SECRET = "whsec_c3dpdGNoeWFyZCBzZW5kZXIgdGVzdCBrZXk="
URL = "http://payments.test/webhooks/psp"


class FakePsp:
    """Stands in for the payments endpoint: verifies each request over its raw bytes."""

    def __init__(self, secret: str = SECRET) -> None:
        self.verifier = WebhookVerifier([secret])
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.verifier.verify(request.headers, request.content)
        return httpx.Response(202, json={"status": "accepted"})


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No PSP_WEBHOOK_SECRET from the caller's shell and no .env from the repository."""
    monkeypatch.delenv("PSP_WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_build_event_has_the_documented_shape():
    at = datetime(2025, 3, 1, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    event = build_event("payment.succeeded", "o-1", 4200, "eur", "psp_1", timestamp=at)
    assert event == {
        "type": "payment.succeeded",
        "timestamp": "2025-03-01T12:30:00Z",
        "data": {
            "order_id": "o-1",
            "amount_cents": 4200,
            "currency": "EUR",
            "provider_payment_id": "psp_1",
        },
    }


def test_build_event_defaults_to_now_and_a_fresh_provider_payment_id():
    first, second = (
        build_event("payment.succeeded", "o-1", 1),
        build_event("payment.succeeded", "o-1", 1),
    )
    stamped = datetime.fromisoformat(first["timestamp"])
    assert stamped.tzinfo is not None
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)
    assert first["data"]["currency"] == "EUR"
    assert first["data"]["provider_payment_id"] != second["data"]["provider_payment_id"]


def test_build_event_carries_the_failure_reason_only_when_given():
    failed = build_event("payment.failed", "o-1", 100, failure_reason="card_declined")
    assert failed["data"]["failure_reason"] == "card_declined"
    assert "failure_reason" not in build_event("payment.failed", "o-1", 100)["data"]


def test_build_event_refuses_an_unknown_type():
    with pytest.raises(ValueError, match="unknown PSP event type"):
        build_event("payment.teleported", "o-1", 100)


def test_build_event_refuses_a_negative_amount():
    with pytest.raises(ValueError, match="negative"):
        build_event("payment.refunded", "o-1", -1)


def test_encode_event_is_compact_json():
    event = build_event("payment.succeeded", "o-1", 100, provider_payment_id="psp_1")
    body = encode_event(event)
    assert b" " not in body
    assert json.loads(body) == event


def test_send_event_sync_posts_the_signed_raw_bytes():
    psp = FakePsp()
    event = build_event("payment.succeeded", "o-1", 100)
    with httpx.Client(transport=httpx.MockTransport(psp)) as client:
        response = send_event_sync(URL, SECRET, event, msg_id="msg_1", client=client)
    assert response.status_code == 202
    (request,) = psp.requests
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-type"] == "application/json"
    assert request.content == encode_event(event)


async def test_send_event_posts_the_signed_raw_bytes():
    psp = FakePsp()
    event = build_event("payment.failed", "o-2", 100, failure_reason="insufficient_funds")
    async with httpx.AsyncClient(transport=httpx.MockTransport(psp)) as client:
        response = await send_event(URL, SECRET, event, client=client)
    assert response.status_code == 202
    (request,) = psp.requests
    assert request.headers["webhook-id"].startswith("msg_")
    assert json.loads(request.content) == event


def test_signing_secret_prefers_the_explicit_one(clean_environment, monkeypatch):
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", DEVELOPMENT_SECRET)
    assert signing_secret(SECRET) == SECRET


def test_signing_secret_takes_the_first_of_several_in_the_environment(
    clean_environment, monkeypatch
):
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", f"  {SECRET} {DEVELOPMENT_SECRET}")
    assert signing_secret() == SECRET


def test_signing_secret_reads_dot_env(clean_environment):
    (clean_environment / ".env").write_text(f"PSP_WEBHOOK_SECRET={SECRET}\n")
    assert signing_secret() == SECRET


def test_signing_secret_environment_wins_over_dot_env(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text(f"PSP_WEBHOOK_SECRET={DEVELOPMENT_SECRET}\n")
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", SECRET)
    assert signing_secret() == SECRET


def test_signing_secret_falls_back_to_the_development_secret(clean_environment, monkeypatch):
    assert signing_secret() == DEVELOPMENT_SECRET
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", "")
    assert signing_secret() == DEVELOPMENT_SECRET
