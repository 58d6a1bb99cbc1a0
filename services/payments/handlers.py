"""Everything payments does, for commands and for provider webhooks, registered at the bottom."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Literal

import structlog
from pydantic import ValidationError

from payments import db
from payments.domain import (
    Decision,
    Owed,
    Payment,
    PaymentStatus,
    ProviderReport,
    on_provider_report,
    on_refund_requested,
)
from payments.messages import (
    PaymentFailed,
    PaymentMessage,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    ProviderEvent,
    RefundRequested,
)
from shared.db import Connection, Row, as_updated
from shared.envelope import Envelope
from shared.handlers import Handler
from shared.outbox import in_turn
from shared.tracing import resumed, trace_headers

log = structlog.get_logger(__name__)

WebhookOutcome = Literal["applied", "ignored", "pending", "duplicate"]


def _payment(row: Row) -> Payment:
    return Payment(PaymentStatus(row.status), row.amount_cents, row.currency)


def _report(event: ProviderEvent) -> ProviderReport:
    data = event.data
    return ProviderReport(event.type, data.amount_cents, data.currency,
                          data.provider_payment_id, data.failure_reason)  # fmt: skip


def _message(decision: Decision, payment: Row | SimpleNamespace) -> PaymentMessage:
    """The event `decision` owes orders, filled from the payment as the move leaves it."""
    ids = {"payment_id": payment.id, "order_id": payment.order_id}
    if decision.owes is Owed.PAYMENT_SUCCEEDED:
        return PaymentSucceeded(**ids, amount_cents=payment.amount_cents, currency=payment.currency,
                                provider_payment_id=payment.provider_payment_id)  # fmt: skip
    if decision.owes is Owed.PAYMENT_FAILED:
        return PaymentFailed(**ids, reason=decision.reason)
    return PaymentRefunded(**ids, amount_cents=payment.amount_cents, currency=payment.currency)


async def _apply(
    conn: Connection,
    payment: Row,
    decision: Decision,
    webhook_id: str,
    *,
    command: Envelope | None = None,
) -> Row:
    """Write what a provider report decided and owe orders its event; the payment as it is now.

    A command carries the order's correlation id; a webhook alone uses the one stored with the
    payment, and names its webhook-id as the cause.
    """
    if decision.ignored:
        log.info("webhook ignored", webhook_id=webhook_id, reason=decision.note)
        return payment
    # What the move owes goes into the outbox in the move's own statement: built first, from
    # the payment as the move will leave it.
    owed = []
    if decision.owes is not None:
        moved = as_updated(payment, status=decision.status.value, **decision.changes)
        owed = in_turn(_message(decision, moved), caused_by=command,
                       correlation_id=payment.correlation_id, causation_id=webhook_id)  # fmt: skip
    return await db.update_payment(
        conn, payment.id, status=decision.status.value, owed=owed, **decision.changes
    )


async def request_payment(conn: Connection, envelope: Envelope) -> None:
    """Create the order's payment, then apply any webhook that arrived before this command."""
    command = PaymentRequested.model_validate(envelope.data)
    await db.lock_order(conn, command.order_id)
    payment = await db.insert_payment(
        conn,
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
    if not payment.webhooks_waiting:  # as for nearly every payment: none came before it
        return
    for webhook in await db.pending_webhooks(conn, command.order_id):
        try:
            event = ProviderEvent.model_validate_json(webhook.body)
        except ValidationError as exc:
            # Accepted by an older version of this model: settle it, never park the command.
            await db.settle_webhook(conn, webhook.webhook_id, "ignored", f"unreadable: {exc}")
            continue
        decision = on_provider_report(_payment(payment), _report(event))
        payment = await _apply(conn, payment, decision, webhook.webhook_id, command=envelope)
        await db.settle_webhook(conn, webhook.webhook_id, decision.outcome, decision.note)


async def request_refund(conn: Connection, envelope: Envelope) -> None:
    """A succeeded payment waits for the provider's refund; anything else is recorded and ignored."""
    command = RefundRequested.model_validate(envelope.data)
    await db.lock_order(conn, command.order_id)
    payment = await db.payment_for_order(conn, command.order_id)
    if payment is None:
        log.warning("refund requested for an order without payment", order_id=str(command.order_id))
        return
    decision = on_refund_requested(_payment(payment))
    if decision.ignored:
        log.info("refund request ignored", order_id=str(command.order_id), reason=decision.note)
        return
    await db.update_payment(conn, payment.id, status=decision.status.value)


async def receive_webhook(
    conn: Connection, webhook_id: str, event: ProviderEvent, body: bytes
) -> WebhookOutcome:
    """Store a verified webhook once and apply it, or keep it until its payment is requested."""
    order_id = event.data.order_id
    await db.lock_order(conn, order_id)
    webhook = {"webhook_id": webhook_id, "type": event.type, "order_id": order_id,
              "body": body.decode()}  # fmt: skip
    payment = await db.payment_for_order(conn, order_id)
    if payment is None:
        return "pending" if await db.record_webhook(conn, **webhook) else "duplicate"
    decision = on_provider_report(_payment(payment), _report(event))
    # Stored in its final state, before anything else is written: a repeated webhook-id stops here.
    if not await db.record_settled_webhook(
        conn, **webhook, state=decision.outcome, outcome=decision.note
    ):
        return "duplicate"
    # The provider sends no trace context: what the webhook causes joins the order's trace.
    with resumed(payment.trace_context, "payment webhook applied"):
        await _apply(conn, payment, decision, webhook_id)
    return decision.outcome


# Every command payments consumes from `payments.payment-requests`, and what it does with it.
COMMAND_HANDLERS: dict[str, Handler] = {
    "payment.requested": request_payment,
    "payment.refund_requested": request_refund,
}
