"""Composition root of the payments service: `uvicorn payments.app:app` or `create_app(settings)`."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from payments import db
from payments.api import router as payments_router
from payments.handlers import COMMAND_HANDLERS
from payments.messages import (
    PAYMENT_REQUESTS_QUEUE,
    PAYMENTS_COMMANDS_EXCHANGE,
    PAYMENTS_EVENTS_EXCHANGE,
    PRODUCED,
)
from payments.settings import PaymentsSettings
from payments.webhooks import router as webhooks_router
from shared.app import create_service_app, lazy_app
from shared.webhooks import WebhookVerifier
from shared.wiring import RabbitSubscription, Wiring


def wiring() -> Wiring:
    """Payments owns both payment exchanges: commands come in on one, its events go out on the
    other."""
    return Wiring(
        service="payments",
        outbox=db.outbox,
        inbox=db.inbox,
        produces=PRODUCED,
        exchanges={PAYMENTS_COMMANDS_EXCHANGE: "direct", PAYMENTS_EVENTS_EXCHANGE: "topic"},
        rabbit=[
            RabbitSubscription(PAYMENT_REQUESTS_QUEUE, PAYMENTS_COMMANDS_EXCHANGE, COMMAND_HANDLERS)
        ],
    )


def create_app(settings: PaymentsSettings | None = None, *, consume: bool = True) -> FastAPI:
    settings = settings or PaymentsSettings()
    app = create_service_app(
        title="switchyard payments",
        settings=settings,
        wiring=wiring,
        routers=[payments_router, webhooks_router],
        consume=consume,
    )
    app.state.webhook_verifier = WebhookVerifier(
        settings.psp_webhook_secret.get_secret_value(),
        timedelta(seconds=settings.webhook_tolerance_seconds),
    )
    return app


__getattr__ = lazy_app(create_app)
