"""The inbox against real Postgres: a message's effect happens once, however often it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import prometheus_client
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import AsyncpgStatement, Connection, Database
from shared.envelope import Envelope, new_envelope
from shared.inbox import InboxGuard, first_time, inbox_table
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

CONCURRENT_DELIVERIES = 5


class HandlerFailed(Exception):
    pass


@pytest.fixture
async def tables(engine: AsyncEngine, names: str) -> tuple[sa.Table, sa.Table]:
    """This test's own schema with an inbox and the table the handler writes its effect to."""
    schema = names.rstrip(".")
    metadata = sa.MetaData()
    inbox = inbox_table(metadata, schema)
    effects = sa.Table(
        "payments_recorded",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        schema=schema,
    )
    async with engine.begin() as conn:
        await conn.execute(sa.schema.CreateSchema(schema))
        await conn.run_sync(metadata.create_all)
    return inbox, effects


@pytest.fixture
def consumer(names: str) -> str:
    return names + "orders.payment-events"


def payment_succeeded() -> Envelope:
    return new_envelope(
        type="payment.succeeded", source="payments", subject="order-1", data={"order_id": "order-1"}
    )


def recording(effects: sa.Table):
    """A handler whose effect is one row per call."""

    insert = AsyncpgStatement(sa.insert(effects))

    async def record_payment(conn: Connection, envelope: Envelope) -> None:
        await insert.execute(conn, order_id=envelope.subject)

    return record_payment


def recording_in_one_statement(inbox: sa.Table, effects: sa.Table):
    """A statement handler: its effect's row, written only for a message new to the inbox, in
    the statement that writes the inbox row (`first_time`)."""
    new = first_time(inbox)
    order_id = sa.select(sa.bindparam("order_id", type_=sa.Text)).where(sa.exists(new.select()))
    recorded = sa.insert(effects).from_select(["order_id"], order_id).cte("recorded")
    statement = AsyncpgStatement(
        sa.select(sa.exists(new.select()).label("first_time")).add_cte(recorded)
    )

    async def record_payment(conn: Connection, envelope: Envelope, inbox_row: dict) -> bool:
        row = await statement.one(conn, order_id=envelope.data["order_id"], **inbox_row)
        return row.first_time

    return record_payment


async def count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(sa.select(sa.func.count()).select_from(table))


def duplicates_skipped(consumer: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "switchyard_inbox_duplicates_total", {"consumer": consumer}
    )
    return value or 0.0


async def test_same_message_twice_has_one_effect(engine, service_database, tables, consumer):
    inbox, effects = tables
    handle = InboxGuard(service_database, inbox, consumer).wrap(recording(effects))
    envelope = payment_succeeded()

    await handle(envelope)
    await handle(envelope)  # a redelivery: acknowledged, not raised

    assert await count(engine, effects) == 1
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(inbox.c.consumer, inbox.c.message_id))).all()
    assert rows == [(consumer, envelope.id)]
    assert duplicates_skipped(consumer) == 1


async def test_failing_handler_leaves_neither_effect_nor_inbox_row(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    record_payment = recording(effects)

    async def record_then_fail(conn: Connection, envelope: Envelope) -> None:
        await record_payment(conn, envelope)
        raise HandlerFailed("downstream check failed")

    envelope = payment_succeeded()
    with pytest.raises(HandlerFailed):
        await guard.wrap(record_then_fail)(envelope)
    assert (await count(engine, effects), await count(engine, inbox)) == (0, 0)

    await guard.wrap(record_payment)(envelope)  # the redelivery is processed
    assert (await count(engine, effects), await count(engine, inbox)) == (1, 1)
    assert duplicates_skipped(consumer) == 0


async def waiting_on_locks(engine: AsyncEngine, waiting: int, statements: str) -> None:
    """Until `waiting` statements whose text is LIKE `statements` wait on a lock."""

    async def blocked() -> bool:
        async with engine.connect() as conn:
            statement = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE :statements"
            )
            return await conn.scalar(statement, {"statements": statements}) == waiting

    await eventually(blocked, message=f"{waiting} of {statements!r} waiting on a lock")


async def waiting_on_the_inbox(engine: AsyncEngine, waiting: int) -> None:
    """Until `waiting` other transactions are blocked on the inbox row's primary key."""
    await waiting_on_locks(engine, waiting, "INSERT INTO %inbox%")


async def test_concurrent_duplicate_deliveries_have_one_effect(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    record_payment = recording(effects)

    async def record_while_duplicates_wait(conn: Connection, envelope: Envelope) -> None:
        await record_payment(conn, envelope)
        # Hold the transaction open until every other delivery is inside its own.
        await waiting_on_the_inbox(engine, CONCURRENT_DELIVERIES - 1)

    handle = InboxGuard(service_database, inbox, consumer).wrap(record_while_duplicates_wait)
    envelope = payment_succeeded()
    await asyncio.gather(*(handle(envelope) for _ in range(CONCURRENT_DELIVERIES)))

    assert await count(engine, effects) == 1
    assert duplicates_skipped(consumer) == CONCURRENT_DELIVERIES - 1


async def test_concurrent_duplicate_takes_over_when_the_first_delivery_fails(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    record_payment = recording(effects)
    calls = 0

    async def first_fails(conn: Connection, envelope: Envelope) -> None:
        nonlocal calls
        calls += 1
        await record_payment(conn, envelope)
        if calls == 1:
            await waiting_on_the_inbox(engine, 1)
            raise HandlerFailed("first delivery fails after the second arrived")

    handle = InboxGuard(service_database, inbox, consumer).wrap(first_fails)
    envelope = payment_succeeded()
    outcomes = await asyncio.gather(handle(envelope), handle(envelope), return_exceptions=True)

    assert sorted(type(o).__name__ for o in outcomes) == ["HandlerFailed", "NoneType"]
    assert (await count(engine, effects), await count(engine, inbox)) == (1, 1)
    assert calls == 2


async def test_a_statement_handler_is_one_statement_with_one_effect(
    engine, database, tables, consumer
):
    """No BEGIN, no COMMIT, no inbox insert of its own: the one statement is all of it."""
    inbox, effects = tables
    # Never idle long enough to be pinged: the wire shows the handler's statements alone.
    pooled, sent = Database(database.admin_url, size=1, ping_after_idle=60), []
    try:
        async with pooled.autocommit() as conn:
            conn.add_query_logger(lambda query: sent.append(query.query.split(" AS ")[0]))
        guard = InboxGuard(pooled, inbox, consumer)
        handle = guard.wrap_statement(recording_in_one_statement(inbox, effects))
        envelope = payment_succeeded()

        await handle(envelope)
        await handle(envelope)  # a redelivery: acknowledged, not raised
    finally:
        await pooled.close()

    assert sent == ["WITH first_time", "WITH first_time"]
    assert await count(engine, effects) == 1
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(inbox.c.consumer, inbox.c.message_id))).all()
    assert rows == [(consumer, envelope.id)]
    assert duplicates_skipped(consumer) == 1


async def test_a_failing_statement_leaves_no_inbox_row(engine, service_database, tables, consumer):
    inbox, effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    handle = guard.wrap_statement(recording_in_one_statement(inbox, effects))
    breaking = payment_succeeded().model_copy(update={"data": {"order_id": None}})

    with pytest.raises(asyncpg.NotNullViolationError):
        await handle(breaking)  # its effect breaks a constraint: the inbox row goes with it
    assert (await count(engine, effects), await count(engine, inbox)) == (0, 0)

    mended = breaking.model_copy(update={"data": {"order_id": "order-1"}})
    await handle(mended)  # the same message, replayed once mended, is processed
    assert (await count(engine, effects), await count(engine, inbox)) == (1, 1)
    assert duplicates_skipped(consumer) == 0


@pytest.fixture
async def tally(engine: AsyncEngine, tables, names: str) -> sa.Table:
    """One row counting payments, never below zero: the effect of `counting_in_one_statement`."""
    tallies = sa.Table(
        "tallies",
        sa.MetaData(),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, sa.CheckConstraint("n >= 0"), nullable=False),
        schema=names.rstrip("."),
    )
    async with engine.begin() as conn:
        await conn.run_sync(tallies.metadata.create_all)
        await conn.execute(sa.insert(tallies).values(name="payments", n=0))
    return tallies


def counting_in_one_statement(inbox: sa.Table, tallies: sa.Table, by: Callable[[], int]):
    """A statement handler that adds `by()` to the tally, for a message new to the inbox."""
    new = first_time(inbox)
    added = tallies.c.n + sa.bindparam("by", type_=sa.Integer)
    counted = (
        sa.update(tallies)
        .where(tallies.c.name == "payments", sa.exists(new.select()))
        .values(n=added)
        .cte("counted")
    )
    statement = AsyncpgStatement(
        sa.select(sa.exists(new.select()).label("first_time")).add_cte(counted)
    )

    async def count_payment(conn: Connection, envelope: Envelope, inbox_row: dict) -> bool:
        return (await statement.one(conn, by=by(), **inbox_row)).first_time

    return count_payment


@asynccontextmanager
async def tally_held(
    engine: AsyncEngine, tallies: sa.Table, *, set_to: int | None = None
) -> AsyncIterator[None]:
    """The tally's row locked by another transaction until the block ends (and set to `set_to`
    when the block ends): a statement that counts waits there, holding the inbox row it has
    just written."""
    async with engine.begin() as holder:
        if set_to is None:
            await holder.execute(sa.select(tallies).with_for_update())
        else:
            await holder.execute(sa.update(tallies).values(n=set_to))
        yield


async def statements_waiting(engine: AsyncEngine, waiting: int) -> None:
    """Until `waiting` handler statements wait on a lock (the tally's row, or an inbox row)."""
    await waiting_on_locks(engine, waiting, "WITH first_time%")


async def tally_of(engine: AsyncEngine, tallies: sa.Table) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(sa.select(tallies.c.n))


async def test_concurrent_duplicates_of_a_statement_wait_for_the_first(
    engine, service_database, tables, tally, consumer
):
    inbox, _effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    handle = guard.wrap_statement(counting_in_one_statement(inbox, tally, lambda: 1))
    envelope = payment_succeeded()

    async with tally_held(engine, tally):
        deliveries = asyncio.gather(*(handle(envelope) for _ in range(CONCURRENT_DELIVERIES)))
        # One waits on the tally with the inbox row written, the others on that inbox row.
        await statements_waiting(engine, CONCURRENT_DELIVERIES)
    await deliveries

    assert (await tally_of(engine, tally), await count(engine, inbox)) == (1, 1)
    assert duplicates_skipped(consumer) == CONCURRENT_DELIVERIES - 1


async def test_a_duplicate_takes_over_when_the_first_statement_fails(
    engine, service_database, tables, tally, consumer
):
    inbox, _effects = tables
    async with engine.begin() as conn:
        await conn.execute(sa.update(tally).values(n=1))
    adds = iter([-1, 1])
    guard = InboxGuard(service_database, inbox, consumer)
    handle = guard.wrap_statement(counting_in_one_statement(inbox, tally, lambda: next(adds)))
    envelope = payment_succeeded()

    # The first delivery takes 1 off the tally it reads (1), then waits for the holder, which
    # leaves it at 0: taken off again, it breaks the tally's CHECK once it has waited.
    async with tally_held(engine, tally, set_to=0):
        first = asyncio.create_task(handle(envelope))
        await statements_waiting(engine, 1)  # its inbox row written, waiting on the tally
        second = asyncio.create_task(handle(envelope))
        await statements_waiting(engine, 2)  # waiting on the first's inbox row
    with pytest.raises(asyncpg.CheckViolationError):
        await first
    await second  # the first's inbox row went with its failure: the duplicate counts

    assert (await tally_of(engine, tally), await count(engine, inbox)) == (1, 1)
    assert duplicates_skipped(consumer) == 0
