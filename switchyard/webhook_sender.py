"""Build, sign and post PSP webhook events: shared by the CLI, the demo and the load generator."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.webhooks import DEVELOPMENT_SECRET, parse_secrets, signed_headers

EventType = Literal["payment.succeeded", "payment.failed", "payment.refunded"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DEFAULT_URL = "http://127.0.0.1:8003/webhooks/psp"
TIMEOUT_SECONDS = 10.0


class _SenderSettings(BaseSettings):
    """PSP_WEBHOOK_SECRET from the environment, else from `.env` in the working directory."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    psp_webhook_secret: str = ""


def signing_secret(secret: str | None = None) -> str:
    """The secret to sign with: `secret`, else the first configured, else the development one."""
    configured = secret or _SenderSettings().psp_webhook_secret
    # During a rotation the setting lists several secrets; the first is the one to sign with.
    secrets = parse_secrets(configured)
    return secrets[0] if secrets else DEVELOPMENT_SECRET


def build_event(
    type: str,
    order_id: str,
    amount_cents: int,
    currency: str = "EUR",
    provider_payment_id: str | None = None,
    failure_reason: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """The JSON body of one PSP event, as the payments service expects it."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown PSP event type {type!r}; expected one of {EVENT_TYPES}")
    if amount_cents < 0:
        raise ValueError("amount_cents must not be negative")
    data: dict[str, Any] = {
        "order_id": str(order_id),
        "amount_cents": amount_cents,
        "currency": currency.upper(),
        "provider_payment_id": provider_payment_id or f"psp_{uuid.uuid4().hex}",
    }
    if failure_reason is not None:
        data["failure_reason"] = failure_reason
    when = timestamp or datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return {"type": type, "timestamp": when.isoformat().replace("+00:00", "Z"), "data": data}


def encode_event(event: dict[str, Any]) -> bytes:
    """The exact bytes to sign and send: the signature covers these, not a re-serialisation."""
    return json.dumps(event, separators=(",", ":")).encode()


def signed_request(
    secret: str, event: dict[str, Any], msg_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers that sign it, for any HTTP client."""
    body = encode_event(event)
    return body, signed_headers(secret, body, msg_id=msg_id)


async def send_event(
    url: str,
    secret: str,
    event: dict[str, Any],
    *,
    msg_id: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """Sign `event` and POST it; pass `client` to reuse connections (the load generator does)."""
    body, headers = signed_request(secret, event, msg_id)
    if client is not None:
        return await client.post(url, content=body, headers=headers)
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as own_client:
        return await own_client.post(url, content=body, headers=headers)


def send_event_sync(
    url: str,
    secret: str,
    event: dict[str, Any],
    *,
    msg_id: str | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """send_event for code without an event loop, such as the CLI."""
    body, headers = signed_request(secret, event, msg_id)
    if client is not None:
        return client.post(url, content=body, headers=headers)
    with httpx.Client(timeout=TIMEOUT_SECONDS) as own_client:
        return own_client.post(url, content=body, headers=headers)
