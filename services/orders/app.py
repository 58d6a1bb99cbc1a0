"""Composition root of the orders service: `uvicorn orders.app:app` or `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from orders import db
from orders.api import router
from orders.handlers import PAYMENT_EVENT_HANDLERS, USERS_EVENT_HANDLERS
from orders.messages import PAYMENT_EVENTS_QUEUE, PAYMENTS_EVENTS, PRODUCED, USERS_EVENTS_TOPIC
from orders.settings import OrdersSettings
from orders.users_client import UsersClient
from shared.app import create_service_app, lazy_app
from shared.wiring import KafkaSubscription, RabbitSubscription, Wiring


def wiring() -> Wiring:
    """Orders publishes `orders.events` and payment commands; reads payment events, deleted users."""
    return Wiring(
        service="orders",
        outbox=db.outbox,
        inbox=db.inbox,
        produces=PRODUCED,
        rabbit=[RabbitSubscription(PAYMENT_EVENTS_QUEUE, PAYMENTS_EVENTS, PAYMENT_EVENT_HANDLERS)],
        kafka=[KafkaSubscription(USERS_EVENTS_TOPIC, "orders", USERS_EVENT_HANDLERS)],
    )


def create_app(settings: OrdersSettings | None = None, *, consume: bool = True) -> FastAPI:
    settings = settings or OrdersSettings()

    @asynccontextmanager
    async def users_client(app: FastAPI) -> AsyncIterator[None]:
        async with UsersClient(
            settings.users_url, timeout=settings.users_timeout, attempts=settings.users_attempts
        ) as users:
            app.state.users = users
            yield

    return create_service_app(
        title="switchyard orders",
        settings=settings,
        wiring=wiring,
        routers=[router],
        consume=consume,
        resources=users_client,
    )


__getattr__ = lazy_app(create_app)
