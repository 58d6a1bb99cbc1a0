"""Group commit against real Postgres: messages handed in together share one transaction, and
each still has its own outcome, its own context, and its effect exactly once."""

from __future__ import annotations

import asyncio
import contextvars
import socket

import asyncpg
import prometheus_client
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Connection, Database, is_unavailable
from shared.envelope import Envelope, new_envelope
from shared.group_commit import GroupCommit
from shared.inbox import InboxGuard, inbox_table

pytestmark = pytest.mark.integration

caller = contextvars.ContextVar("caller", default=None)


class HandlerFailed(Exception):
    pass


@pytest.fixture
async def tables(engine: AsyncEngine, names: str) -> tuple[sa.Table, sa.Table]:
    """This test's own schema: an inbox, and one row per effect with the transaction it ran in."""
    schema = names.rstrip(".")
    metadata = sa.MetaData()
    inbox = inbox_table(metadata, schema)
    effects = sa.Table(
        "effects",
        metadata,
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("caller", sa.Text),
        schema=schema,
    )
    async with engine.begin() as conn:
        await conn.execute(sa.schema.CreateSchema(schema))
        await conn.run_sync(metadata.create_all)
    return inbox, effects


@pytest.fixture
def consumer(names: str) -> str:
    return names + "orders.payment-events"


def message(n: int) -> Envelope:
    return new_envelope(type="payment.succeeded", source="payments", subject=f"order-{n}", data={})


def effect_of(effects: sa.Table, fails: set[str] = frozenset()):
    """A handler that writes one row: the message, its transaction, and the caller it ran for."""
    insert = (
        f'INSERT INTO "{effects.schema}".effects (message_id, txid, caller) '
        "VALUES ($1, txid_current(), $2)"
    )

    async def handle(conn: Connection, envelope: Envelope) -> None:
        await conn.execute(insert, envelope.id, caller.get())
        if envelope.id in fails:
            raise HandlerFailed(envelope.id)

    return handle


async def hand_in(group: GroupCommit, envelopes: list[Envelope]) -> list[object]:
    """Each message from a caller of its own, as a transport hands them in, all at once."""

    async def one(envelope: Envelope) -> None:
        caller.set(envelope.subject)
        await group(envelope)

    async with asyncio.timeout(30):  # a caller left waiting fails the test, not the run
        return await asyncio.gather(*(one(e) for e in envelopes), return_exceptions=True)


async def rows(engine: AsyncEngine, table: sa.Table) -> list[sa.Row]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(table))).all()


def sample(name: str, consumer: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, {"consumer": consumer}) or 0.0


async def test_messages_handed_in_together_commit_in_one_transaction_each_in_its_own_context(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    group = GroupCommit(service_database, guard, effect_of(effects))
    envelopes = [message(n) for n in range(5)]

    assert await hand_in(group, envelopes) == [None] * 5

    done = await rows(engine, effects)
    assert sorted(r.message_id for r in done) == sorted(e.id for e in envelopes)
    assert len({r.txid for r in done}) == 1  # one transaction for all five
    # Each handler saw its own caller's context, not the batch leader's.
    assert {r.message_id: r.caller for r in done} == {e.id: e.subject for e in envelopes}
    assert len(await rows(engine, inbox)) == 5
    assert sample("switchyard_consumer_batch_messages_sum", consumer) == 5
    assert sample("switchyard_consumer_batch_messages_count", consumer) == 1


async def test_a_failing_message_rolls_its_batch_back_and_fails_alone(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    envelopes = [message(n) for n in range(4)]
    bad = envelopes[2]
    guard = InboxGuard(service_database, inbox, consumer)
    group = GroupCommit(service_database, guard, effect_of(effects, fails={bad.id}))

    outcomes = await hand_in(group, envelopes)

    assert [type(o).__name__ for o in outcomes] == [
        "NoneType",
        "NoneType",
        "HandlerFailed",
        "NoneType",
    ]
    done = await rows(engine, effects)
    assert sorted(r.message_id for r in done) == sorted(e.id for e in envelopes if e is not bad)
    assert len({r.txid for r in done}) == 3  # the batch rolled back; each ran alone
    assert bad.id not in {r.message_id for r in await rows(engine, inbox)}
    assert sample("switchyard_consumer_batch_fallbacks_total", consumer) == 1

    # The failed one, delivered again once its cause is gone, is handled.
    healed = GroupCommit(service_database, guard, effect_of(effects))
    assert await hand_in(healed, [bad]) == [None]
    assert len(await rows(engine, effects)) == 4


async def test_duplicates_in_a_batch_and_in_the_inbox_have_no_second_effect(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    group = GroupCommit(service_database, guard, effect_of(effects))
    first, second = message(1), message(2)
    assert await hand_in(group, [first]) == [None]

    # `first` again (already in the inbox), and `second` twice in one batch.
    assert await hand_in(group, [first, second, second]) == [None] * 3

    assert sorted(r.message_id for r in await rows(engine, effects)) == sorted(
        [first.id, second.id]
    )
    assert sample("switchyard_inbox_duplicates_total", consumer) == 2


async def test_a_handler_that_swallows_a_database_error_cannot_take_its_batch_down_with_it(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    envelopes = [message(n) for n in range(3)]
    careless = envelopes[-1]  # handled last in its batch: no statement after it would fail
    handle = effect_of(effects)

    async def swallowing(conn: Connection, envelope: Envelope) -> None:
        if envelope is careless:
            try:
                await conn.execute("SELECT 1 / 0")
            except asyncpg.DivisionByZeroError:
                return  # caught outside a savepoint: the transaction can no longer commit
        await handle(conn, envelope)

    group = GroupCommit(service_database, InboxGuard(service_database, inbox, consumer), swallowing)
    assert await hand_in(group, envelopes) == [None] * 3

    # The others ran again alone and committed; the careless one lost its own effect only.
    done = {r.message_id for r in await rows(engine, effects)}
    assert done == {envelopes[0].id, envelopes[1].id}
    assert sample("switchyard_consumer_batch_fallbacks_total", consumer) == 1


async def test_past_the_limit_the_messages_left_over_lead_the_next_batch(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    guard = InboxGuard(service_database, inbox, consumer)
    group = GroupCommit(service_database, guard, effect_of(effects), limit=3)
    envelopes = [message(n) for n in range(8)]

    assert await hand_in(group, envelopes) == [None] * 8

    done = await rows(engine, effects)
    assert len(done) == 8
    by_transaction: dict[int, int] = {}
    for r in done:
        by_transaction[r.txid] = by_transaction.get(r.txid, 0) + 1
    assert sorted(by_transaction.values()) == [2, 3, 3]


async def test_callers_cancelled_while_they_wait_leave_no_one_stuck(
    engine, service_database, tables, consumer
):
    inbox, effects = tables
    small = Database(service_database.url, size=1)
    group = GroupCommit(small, InboxGuard(small, inbox, consumer), effect_of(effects), limit=1)
    envelopes = [message(n) for n in range(5)]
    try:
        async with small.reading():  # the only connection: the first leader waits for it
            tasks = [asyncio.create_task(group(e)) for e in envelopes]
            await asyncio.sleep(0)  # all five handed in: the first leads, the rest wait in line
            tasks[0].cancel()  # a leader cancelled before its batch began
            tasks[1].cancel()  # the next in line, to which its lead passes
            await asyncio.wait(tasks[:2])
            tasks[3].cancel()  # one further back
        async with asyncio.timeout(30):
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await small.close()

    assert [type(o).__name__ for o in outcomes] == [
        "CancelledError", "CancelledError", "NoneType", "CancelledError", "NoneType"
    ]  # fmt: skip
    done = {r.message_id for r in await rows(engine, effects)}
    assert done == {envelopes[2].id, envelopes[4].id}  # a cancelled caller's message is not run


async def test_a_database_that_is_down_fails_every_message_as_an_outage(tables, consumer):
    inbox, effects = tables
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Database(f"postgresql://nobody@127.0.0.1:{port}/nothing", size=2)
    group = GroupCommit(down, InboxGuard(down, inbox, consumer), effect_of(effects))
    try:
        outcomes = await hand_in(group, [message(n) for n in range(3)])
    finally:
        await down.close()

    assert len(outcomes) == 3 and all(is_unavailable(o) for o in outcomes), outcomes
