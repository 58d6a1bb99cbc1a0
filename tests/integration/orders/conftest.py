"""Orders for real: its app and the real users app on real ports, the real brokers around them."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.app import create_app
from orders.messages import PAYMENT_EVENTS_QUEUE, PAYMENTS_EVENTS
from orders.settings import OrdersSettings
from payments.app import wiring as payments_wiring
from shared.channels import Channel
from shared.db import make_engine
from shared.envelope import Envelope, decode, new_envelope
from shared.rabbit import RabbitBus, parking_queue
from tests.support.eventually import eventually
from tests.support.servers import serving
from tests.support.services import delete_work_queues, settings_for
from users.app import create_app as create_users_app
from users.settings import UsersSettings


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Commands:
    """Every payment command orders sent, read from a queue bound to `payments.commands`."""

    received: list[Envelope] = field(default_factory=list)

    def of(self, type: str, order_id: str) -> list[Envelope]:
        return [e for e in self.received if e.type == type and e.subject == order_id]


@dataclass
class Orders:
    """The running orders service, and what a test needs to drive and inspect it."""

    http: httpx.AsyncClient
    db: AsyncEngine
    rabbit: RabbitBus

    async def place(self, user_id: str, **headers: str) -> dict:
        body = {
            "user_id": user_id,
            "currency": "EUR",
            "items": [
                {"sku": "book", "quantity": 2, "unit_price_cents": 1250},
                {"sku": "pen", "quantity": 3, "unit_price_cents": 99},
            ],
        }
        r = await self.http.post("/api/v1/orders", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    async def status(self, order_id: str) -> str:
        r = await self.http.get(f"/api/v1/orders/{order_id}")
        assert r.status_code == 200, r.text
        return r.json()["status"]

    async def reaches(self, order_id: str, status: str) -> None:
        async def reached() -> bool:
            return await self.status(order_id) == status

        await eventually(reached, message=f"order {order_id} {status}")

    async def payment_event(self, type: str, order_id: str, **data) -> Envelope:
        """Publish what payments would publish on `payments.events`."""
        envelope = new_envelope(
            type=type,
            source="switchyard/payments",
            subject=order_id,
            data={"payment_id": f"pay-{order_id[:8]}", "order_id": order_id, **data},
        )
        await self.publish(envelope)
        return envelope

    async def publish(self, envelope: Envelope) -> None:
        await self.rabbit.publish(Channel.rabbit(PAYMENTS_EVENTS, envelope.type), envelope)

    async def handled(self, envelope: Envelope) -> None:
        """Until the envelope's inbox row is committed, with whatever effect it had."""

        async def recorded() -> bool:
            query = sa.text("SELECT 1 FROM orders.inbox WHERE message_id = :id")
            async with self.db.connect() as conn:
                return (await conn.execute(query, {"id": envelope.id})).first() is not None

        await eventually(recorded, message=f"{envelope.type} {envelope.id} handled")

    async def rows(self, query: str, **params) -> list[sa.Row]:
        async with self.db.connect() as conn:
            return list(await conn.execute(sa.text(query), params))

    async def outbox(self, order_id: str) -> list[sa.Row]:
        return await self.rows(
            "SELECT type, broker, destination, routing_key, key, payload, sent_at"
            " FROM orders.outbox WHERE key = :key ORDER BY id",
            key=order_id,
        )

    async def history(self, order_id: str) -> list[sa.Row]:
        return await self.rows(
            "SELECT event, message_id, from_status, to_status, outcome"
            " FROM orders.order_history WHERE order_id = :id ORDER BY id",
            id=order_id,
        )


@pytest.fixture
async def users_url(stack, database, names) -> AsyncIterator[str]:
    """The real users service, on this test's database copy and broker names.

    It serves HTTP and publishes its events; its own consumer (order stats) is left off, as
    nothing here reads the stats and joining a Kafka group costs each test a second.
    """
    settings = settings_for(UsersSettings, "users", stack, database, names)
    app = create_users_app(settings, consume=False)
    async with serving(app) as url:
        yield url


@pytest.fixture
async def users(users_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=users_url) as http:
        yield http


async def new_user(users: httpx.AsyncClient) -> str:
    r = await users.post(
        "/api/v1/users", json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "name": "Ada"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
async def commands(stack, names) -> AsyncIterator[Commands]:
    """A stand-in for payments: the exchanges it owns, and a queue on its commands bound before
    orders publishes anything."""
    seen = Commands()
    payments = payments_wiring()
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        for name, kind in payments.exchanges.items():
            await channel.declare_exchange(names + name, aio_pika.ExchangeType(kind), durable=True)
        [commands] = payments.rabbit
        queue = await channel.declare_queue(exclusive=True)
        for key in commands.routing_keys:
            await queue.bind(names + commands.exchange, key)

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                seen.received.append(decode(message.body))

        await queue.consume(collect)
        yield seen


async def serve_orders(
    stack, database, names, users_url: str, **overrides
) -> AsyncIterator[Orders]:
    settings = settings_for(
        OrdersSettings,
        "orders",
        stack,
        database,
        names,
        users_url=users_url,
        users_timeout=1.0,
        **overrides,
    )
    engine = make_engine(database.admin_url)
    try:
        async with (
            serving(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
            RabbitBus(stack.amqp_url, prefix=names) as rabbit,
        ):
            yield Orders(http, engine, rabbit)
    finally:
        await engine.dispose()
        await delete_work_queues(stack.amqp_url, names + PAYMENT_EVENTS_QUEUE)


@pytest.fixture
async def orders(stack, database, names, users_url, commands) -> AsyncIterator[Orders]:
    """Orders, asking the real users service."""
    async for running in serve_orders(stack, database, names, users_url):
        yield running


@pytest.fixture
async def orders_without_users(stack, database, names, commands) -> AsyncIterator[Orders]:
    """Orders whose users service is down (nothing listens on its port)."""
    async for running in serve_orders(stack, database, names, f"http://127.0.0.1:{closed_port()}"):
        yield running


async def parked(amqp_url: str, names: str) -> int:
    """Messages parked in the payment events' dead-letter queue (a plain channel: exact depth)."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            parking_queue(names + PAYMENT_EVENTS_QUEUE), passive=True
        )
        return queue.declaration_result.message_count
