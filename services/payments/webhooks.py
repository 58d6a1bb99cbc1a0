"""`POST /webhooks/psp`: the payment provider's signed events, verified over the raw bytes."""

from __future__ import annotations

from typing import Literal

import structlog
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError

from payments import handlers
from payments.messages import ProviderEvent
from shared.api import Problem, database
from shared.db import is_retry_later
from shared.metrics import WEBHOOKS
from shared.webhooks import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidWebhook

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

MAX_WEBHOOK_ID = 256


class WebhookReceipt(BaseModel):
    webhook_id: str
    outcome: Literal["applied", "ignored", "pending", "duplicate"]


def _error(code: int, outcome: str, detail) -> HTTPException:
    """The error response for a webhook we did not take, counted by outcome."""
    WEBHOOKS.labels(outcome).inc()
    return HTTPException(code, detail)


async def _raw_body(request: Request, limit: int) -> bytes:
    """The request bytes exactly as sent, refused past `limit` without reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _error(status.HTTP_413_CONTENT_TOO_LARGE, "too_large", "body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # chunked or lying about its length
            raise _error(status.HTTP_413_CONTENT_TOO_LARGE, "too_large", "body too large")
    return bytes(body)


def _header(name: str, description: str, **schema) -> dict:
    schema = {"type": "string", "minLength": 1} | schema
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": schema,
    }


# The route reads its headers and body itself (the signature covers the raw bytes), so the
# document is told what they are and what each refusal means.
SIGNED = [
    _header(ID_HEADER, "The event's id, the same on each delivery of it", maxLength=MAX_WEBHOOK_ID),
    _header(TIMESTAMP_HEADER, "Unix seconds when it was signed", pattern="^[0-9]+$"),
    _header(SIGNATURE_HEADER, "Space-separated `v1,<base64>` signatures"),
]


@router.post(
    "/webhooks/psp",
    response_model=WebhookReceipt,
    responses={
        202: {"model": WebhookReceipt, "description": "Stored; applied when the payment exists"},
        400: {"model": Problem, "description": f"Signed, but its {ID_HEADER} is too long"},
        401: {"model": Problem, "description": "Unsigned, forged, stale or future-dated"},
        413: {"model": Problem, "description": "Body over the size limit"},
        422: {"model": Problem, "description": "Signed, but not a payment event we understand"},
        503: {"model": Problem, "description": "Database unavailable: nothing stored, retry later"},
    },
    openapi_extra={"parameters": SIGNED},
)
async def receive_psp_webhook(request: Request, response: Response) -> WebhookReceipt:
    """A Standard Webhooks event from the payment provider: verified, stored once and applied."""
    settings = request.app.state.settings
    body = await _raw_body(request, settings.webhook_max_body_bytes)
    # Nothing about the body is trusted, or even parsed, before its signature is checked.
    try:
        request.app.state.webhook_verifier.verify(request.headers, body)
    except InvalidWebhook as exc:
        raise _error(status.HTTP_401_UNAUTHORIZED, "rejected", exc.reason) from None
    webhook_id = request.headers[ID_HEADER].strip()  # as verified: signed together with the body
    if len(webhook_id) > MAX_WEBHOOK_ID:
        raise _error(status.HTTP_400_BAD_REQUEST, "invalid", f"{ID_HEADER} too long")
    try:
        event = ProviderEvent.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid", errors) from None
    try:
        async with database(request).transaction() as conn:
            outcome = await handlers.receive_webhook(conn, webhook_id, event, body)
    except Exception as exc:
        if not is_retry_later(exc):
            raise  # a bug of ours: the app answers 500 and logs it
        # The transaction rolled back as a whole; a 5xx makes the provider send it again later.
        log.warning("webhook not stored: database unavailable", error=repr(exc))
        detail = "database unavailable, retry later"
        raise _error(status.HTTP_503_SERVICE_UNAVAILABLE, "unavailable", detail) from exc
    WEBHOOKS.labels(outcome).inc()
    if outcome == "pending":
        response.status_code = status.HTTP_202_ACCEPTED
    return WebhookReceipt(webhook_id=webhook_id, outcome=outcome)
