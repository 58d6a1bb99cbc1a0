"""Everything payments does, for commands and for provider webhooks, registered at the bottom."""

from __future__ import annotations

import uuid
from typing import Literal

import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from payments import db
from payments.domain import (
    Decision,
    Payment,
    PaymentStatus,
    ProviderReport,
    on_provider_report,
    on_refund_requested,
)
from payments.messages import (
    PaymentEvent,
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    ProviderEvent,
    RefundRequested,
    payment_channel,
    payment_event,
)
from shared.envelope import Envelope
from shared.outbox import add_to_outbox
from shared.tracing import resumed, trace_headers

log = structlog.get_logger(__name__)

WebhookOutcome = Literal["applied", "ignored", "pending", "duplicate"]


def _payment(row: sa.Row) -> Payment:
    return Payment(PaymentStatus(row.status), row.amount_cents, row.currency)


def _event_for(row: sa.Row) -> PaymentEvent | None:
    """The event orders is owed when a payment reaches this status (refund_pending owes none)."""
    status = PaymentStatus(row.status)
    if status is PaymentStatus.SUCCEEDED:
        return PaymentSucceeded(
            payment_id=row.id,
            order_id=row.order_id,
            amount_cents=row.amount_cents,
            currency=row.currency,
            provider_payment_id=row.provider_payment_id,
        )
    if status is PaymentStatus.FAILED:
        return PaymentFailed(payment_id=row.id, order_id=row.order_id, reason=row.failure_reason)
    if status is PaymentStatus.AMOUNT_MISMATCH:
        # Not paid: orders learns it as a failure with a reason it can tell apart.
        return PaymentFailed(payment_id=row.id, order_id=row.order_id, reason="amount_mismatch")
    if status is PaymentStatus.REFUNDED:
        return PaymentRefunded(
            payment_id=row.id,
            order_id=row.order_id,
            amount_cents=row.amount_cents,
            currency=row.currency,
        )
    return None


def _changes(decision: Decision, event: ProviderEvent) -> dict:
    changes: dict = {"status": decision.status.value}
    if decision.status is not PaymentStatus.REFUNDED:  # a refund keeps the payment's provider id
        changes["provider_payment_id"] = event.data.provider_payment_id
    if decision.status is PaymentStatus.FAILED:
        changes["failure_reason"] = event.data.failure_reason or "declined by the provider"
    if decision.status is PaymentStatus.AMOUNT_MISMATCH:
        changes["failure_reason"] = decision.note
    return changes


def _decide(payment: sa.Row, event: ProviderEvent) -> Decision:
    report = ProviderReport(event.type, event.data.amount_cents, event.data.currency)
    return on_provider_report(_payment(payment), report)


async def _apply(
    session: AsyncSession,
    payment: sa.Row,
    decision: Decision,
    event: ProviderEvent,
    webhook_id: str,
    *,
    command: Envelope | None = None,
) -> sa.Row:
    """Move the payment as decided and owe the resulting event; returns the payment as it is now
    (an ignored report changes nothing)."""
    if decision.ignored:
        log.info("webhook ignored", webhook_id=webhook_id, reason=decision.note)
        return payment
    payment = await db.update_payment(session, payment.id, **_changes(decision, event))
    await _publish(session, payment, command=command, webhook_id=webhook_id)
    return payment


def _settled_state(decision: Decision) -> Literal["applied", "ignored"]:
    return "ignored" if decision.ignored else "applied"


async def _publish(
    session: AsyncSession, payment: sa.Row, *, command: Envelope | None, webhook_id: str | None
) -> None:
    payload = _event_for(payment)
    if payload is None:
        return
    # A command carries the order's correlation id; a webhook alone uses the one stored with it.
    envelope = payment_event(
        payload,
        caused_by=command,
        correlation_id=payment.correlation_id,
        causation_id=webhook_id,
    )
    await add_to_outbox(session, db.outbox, payment_channel(payload.TYPE), envelope)


async def request_payment(session: AsyncSession, envelope: Envelope) -> None:
    """Create the order's payment, then apply any webhook that arrived before this command."""
    command = PaymentRequested.model_validate(envelope.data)
    await db.lock_order(session, command.order_id)
    payment = await db.insert_payment(
        session,
        id=uuid.uuid4(),
        order_id=command.order_id,
        user_id=command.user_id,
        amount_cents=command.amount_cents,
        currency=command.currency,
        status=PaymentStatus.AWAITING_CONFIRMATION.value,
        correlation_id=envelope.correlationid,
        trace_context=trace_headers(),
    )
    if payment is None:
        log.info("payment already requested", order_id=str(command.order_id), id=envelope.id)
        return
    for webhook in await db.pending_webhooks(session, command.order_id):
        try:
            event = ProviderEvent.model_validate_json(webhook.body)
        except ValidationError as exc:
            # Accepted by an older version of this model: settle it, never park the command.
            await db.settle_webhook(session, webhook.webhook_id, "ignored", f"unreadable: {exc}")
            continue
        decision = _decide(payment, event)
        payment = await _apply(
            session, payment, decision, event, webhook.webhook_id, command=envelope
        )
        await db.settle_webhook(
            session, webhook.webhook_id, _settled_state(decision), decision.note
        )


async def request_refund(session: AsyncSession, envelope: Envelope) -> None:
    """A succeeded payment waits for the provider's refund; anything else is recorded and ignored."""
    command = RefundRequested.model_validate(envelope.data)
    await db.lock_order(session, command.order_id)
    payment = await db.payment_for_order(session, command.order_id)
    if payment is None:
        log.warning("refund requested for an order without payment", order_id=str(command.order_id))
        return
    decision = on_refund_requested(_payment(payment))
    if decision.ignored:
        log.info("refund request ignored", order_id=str(command.order_id), reason=decision.note)
        return
    await db.update_payment(session, payment.id, status=decision.status.value)


async def receive_webhook(
    session: AsyncSession, webhook_id: str, event: ProviderEvent, body: bytes
) -> WebhookOutcome:
    """Store a verified webhook once and apply it, or keep it until its payment is requested."""
    order_id = event.data.order_id
    await db.lock_order(session, order_id)
    webhook = {"webhook_id": webhook_id, "type": event.type, "order_id": order_id,
              "body": body.decode()}  # fmt: skip
    payment = await db.payment_for_order(session, order_id)
    if payment is None:
        return "pending" if await db.record_webhook(session, **webhook) else "duplicate"
    decision = _decide(payment, event)
    # Stored in its final state, before anything else is written: a repeated webhook-id stops here.
    state, outcome = _settled_state(decision), decision.note
    if not await db.record_settled_webhook(session, **webhook, state=state, outcome=outcome):
        return "duplicate"
    # The provider sends no trace context: what the webhook causes joins the order's trace.
    with resumed(payment.trace_context, "payment webhook applied"):
        await _apply(session, payment, decision, event, webhook_id)
    return state


# Every command payments consumes from `payments.payment-requests`, and what it does with it.
COMMAND_HANDLERS = {
    "payment.requested": request_payment,
    "payment.refund_requested": request_refund,
}
