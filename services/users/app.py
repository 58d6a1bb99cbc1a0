"""Composition root of the users service: `uvicorn users.app:app` or `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app, lazy_app
from shared.wiring import KafkaSubscription, Wiring
from users import db
from users.api import router
from users.handlers import ORDERS_EVENT_HANDLERS
from users.messages import ORDERS_EVENTS_TOPIC, PRODUCED
from users.settings import UsersSettings


def wiring() -> Wiring:
    """Users publishes `users.events` and reads paid and refunded orders for lifetime stats."""
    return Wiring(
        service="users",
        outbox=db.outbox,
        inbox=db.inbox,
        produces=PRODUCED,
        kafka=[KafkaSubscription(ORDERS_EVENTS_TOPIC, "users", ORDERS_EVENT_HANDLERS)],
    )


def create_app(settings: UsersSettings | None = None, *, consume: bool = True) -> FastAPI:
    return create_service_app(
        title="switchyard users",
        settings=settings or UsersSettings(),
        wiring=wiring,
        routers=[router],
        consume=consume,
    )


__getattr__ = lazy_app(create_app)
