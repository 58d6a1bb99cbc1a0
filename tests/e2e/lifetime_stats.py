"""A user's lifetime stats, read only after a barrier: users has handled everything orders said
about an order, so an increment that should not have happened would show.

Without it, "orders_paid is still 0" may only mean users has not read the wrong event yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.channels import Channel
from shared.db import make_engine
from shared.envelope import Envelope, new_envelope
from shared.kafka import KafkaBus
from switchyard.client import SwitchyardClient
from switchyard.stack.bootstrap import with_database
from switchyard.stack.fleet import Fleet
from tests.support.eventually import eventually

MARKER_CENTS = 1
ORDER_HANDLED = sa.text(
    "SELECT count(*) FROM orders.order_history WHERE order_id = :order AND event = :event"
)
ORDER_UNSENT = sa.text("SELECT count(*) FROM orders.outbox WHERE key = :order AND sent_at IS NULL")
USERS_HANDLED = sa.text("SELECT count(*) FROM users.inbox WHERE message_id = :id")


async def stats_after_orders_is_done(
    system: Fleet, client: SwitchyardClient, user_id: str, order_id: str, last_event: str
) -> dict[str, int]:
    """The user's stats once users has handled all orders published about `order_id`.

    First orders has committed its reaction to `last_event` and sent everything it owed about
    the order. Then a marker `order.paid` worth MARKER_CENTS goes on the order's key: users reads
    a partition in order and commits each record's effect before the next, so once the marker
    is in its inbox, every earlier record about the order has counted too.
    """
    engine = make_engine(with_database(system.endpoints.database_url, system.database))
    try:
        await eventually(
            lambda: _orders_done(engine, order_id, last_event),
            timeout=20,
            message=f"orders handled {last_event} and sent all it owed",
        )
        marker = await _send_marker(system, user_id, order_id)
        await eventually(
            lambda: _scalar(engine, USERS_HANDLED, id=marker.id),
            timeout=20,
            message="users handled the marker",
        )
    finally:
        await engine.dispose()
    return (await client.get_user(user_id))["stats"]


async def _orders_done(engine: AsyncEngine, order_id: str, event: str) -> bool:
    handled = await _scalar(engine, ORDER_HANDLED, order=order_id, event=event)
    return handled > 0 and await _scalar(engine, ORDER_UNSENT, order=order_id) == 0


async def _send_marker(system: Fleet, user_id: str, order_id: str) -> Envelope:
    marker = new_envelope(
        type="order.paid",
        source="switchyard/e2e-barrier",
        subject=order_id,  # the record key: the order's own partition
        data={
            "order_id": order_id,
            "user_id": user_id,
            "total_cents": MARKER_CENTS,
            "currency": "EUR",
            "payment_id": "barrier",
        },
    )
    bootstrap, prefix = system.endpoints.kafka_bootstrap, system.prefix
    async with KafkaBus(bootstrap, prefix=prefix, client_id="e2e-barrier") as kafka:
        await kafka.publish(Channel.kafka("orders.events"), marker)
    return marker


async def _scalar(engine: AsyncEngine, query: sa.TextClause, **params: str) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(query, params)
