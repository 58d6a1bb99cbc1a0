"""A real payments service per test: HTTP on a real port, its own database copy and broker names."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aio_pika
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from payments.app import create_app
from payments.settings import PaymentsSettings
from shared.channels import Channel
from shared.db import make_engine
from shared.envelope import Envelope, decode, new_envelope
from shared.rabbit import RabbitBus
from shared.webhooks import signed_headers
from switchyard.webhook_sender import build_event, encode_event
from tests.support.servers import serving
from tests.support.services import settings_for

# Two secrets, as during a rotation: the provider may sign with either.
SECRET = "whsec_" + base64.b64encode(b"payments integration secret, new").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"payments integration secret, old").decode()
COMMANDS = "payments.commands"
EVENTS = "payments.events"


@dataclass(frozen=True)
class Published:
    """One message seen on `payments.events`, with the transport details a consumer relies on."""

    routing_key: str
    content_type: str | None
    envelope: Envelope

    @property
    def type(self) -> str:
        return self.envelope.type


@dataclass
class PaymentsService:
    """The service under test and the levers a test pulls: commands, webhooks, the database."""

    http: httpx.AsyncClient
    bus: RabbitBus
    db: AsyncEngine
    events: list[Published] = field(default_factory=list)

    async def command(self, type: str, data: dict, *, envelope: Envelope | None = None) -> Envelope:
        """Publish a command as orders would (or re-publish `envelope`, a redelivery)."""
        envelope = envelope or new_envelope(
            type=type, source="switchyard/orders", subject=data["order_id"], data=data
        )
        await self.bus.publish(Channel.rabbit(COMMANDS, envelope.type), envelope)
        return envelope

    async def request_payment(
        self, order_id: str, amount_cents: int = 4200, currency: str = "EUR"
    ) -> Envelope:
        data = {
            "order_id": order_id,
            "user_id": str(uuid.uuid4()),
            "amount_cents": amount_cents,
            "currency": currency,
        }
        return await self.command("payment.requested", data)

    async def post_webhook(
        self, body: bytes, headers: dict[str, str] | None = None, *, secret: str = SECRET
    ) -> httpx.Response:
        """POST raw bytes; signed with `secret` unless `headers` are given."""
        headers = signed_headers(secret, body) if headers is None else headers
        return await self.http.post("/webhooks/psp", content=body, headers=headers)

    async def webhook(
        self, type: str, order_id: str, amount_cents: int = 4200, currency: str = "EUR", **kw
    ) -> httpx.Response:
        """A signed provider event built by the project's own sender."""
        msg_id = kw.pop("msg_id", None)
        body = encode_event(build_event(type, order_id, amount_cents, currency, **kw))
        return await self.post_webhook(body, signed_headers(SECRET, body, msg_id=msg_id))

    async def rows(self, query: str, **params) -> list[sa.Row]:
        async with self.db.connect() as conn:
            return list(await conn.execute(sa.text(query), params))

    async def payment(self, order_id: str) -> sa.Row | None:
        rows = await self.rows("SELECT * FROM payments.payments WHERE order_id = :o", o=order_id)
        return rows[0] if rows else None

    async def status(self, order_id: str) -> str | None:
        payment = await self.payment(order_id)
        return payment.status if payment else None

    async def counts(self) -> dict[str, int]:
        """Rows in every payments table: what a refused request must leave untouched."""
        tables = ("payments", "webhooks", "outbox", "inbox")
        query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM payments.{t}" for t in tables)
        return {name: n for name, n in await self.rows(query)}

    async def owed(self, order_id: str) -> list[str]:
        """Types of the outbox rows (sent or not) owed for this order, in order."""
        rows = await self.rows(
            "SELECT type FROM payments.outbox WHERE key = :o ORDER BY id", o=order_id
        )
        return [r.type for r in rows]

    def published(self, order_id: str) -> list[Published]:
        """What payments published about this order, in the order received."""
        return [p for p in self.events if p.envelope.subject == order_id]


@asynccontextmanager
async def running_payments(
    stack, database, names: str, **overrides
) -> AsyncIterator[PaymentsService]:
    """Serve payments for real and watch everything it publishes on `payments.events`."""
    settings = settings_for(
        PaymentsSettings,
        "payments",
        stack,
        database,
        names,
        **{"psp_webhook_secret": f"{SECRET} {OLD_SECRET}", "webhook_max_body_bytes": 4096}
        | overrides,
    )
    service_app = create_app(settings)
    db = make_engine(database.admin_url)
    connection = await aio_pika.connect(stack.amqp_url)
    try:
        async with (
            serving(service_app) as url,
            httpx.AsyncClient(base_url=url, timeout=15) as http,
            RabbitBus(stack.amqp_url, prefix=names) as bus,
        ):
            service = PaymentsService(http, bus, db)
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(names + EVENTS, "#")

            async def observe(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    seen = Published(
                        message.routing_key, message.content_type, decode(message.body)
                    )
                    service.events.append(seen)

            await queue.consume(observe)
            yield service
    finally:
        await connection.close()
        await db.dispose()


@pytest.fixture
async def payments(stack, database, names) -> AsyncIterator[PaymentsService]:
    async with running_payments(stack, database, names) as service:
        yield service


def event_body(type: str, order_id: str, amount_cents: int = 4200, currency: str = "EUR") -> bytes:
    return encode_event(build_event(type, order_id, amount_cents, currency))
