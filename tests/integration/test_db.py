"""What the shared engine sends to Postgres for each kind of work, counted on the wire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import AsyncpgStatement, OutsideTransaction, autocommit, driver, make_engine
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


class Wire:
    """The simple-protocol queries (BEGIN, COMMIT, ROLLBACK, pings) every connection sends."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.queries: list[str] = []
        sa.event.listen(engine.sync_engine.pool, "connect", self._watch)

    def _watch(self, dbapi_connection, _record) -> None:
        driver = dbapi_connection.driver_connection
        driver.add_query_logger(lambda record: self.queries.append(record.query.strip(" ;")))

    def take(self) -> list[str]:
        taken, self.queries[:] = list(self.queries), []
        return taken


async def engine_and_wire(url: str, **options) -> tuple[AsyncEngine, Wire]:
    engine = make_engine(url, pool_size=1, **options)
    wire = Wire(engine)
    async with engine.connect() as conn:  # open the connection before anything is counted
        await conn.execute(sa.text("SELECT 0"))
    wire.take()
    return engine, wire


@pytest.fixture
async def url(database) -> AsyncIterator[str]:
    yield database.admin_url


async def test_a_transaction_is_begin_and_commit_around_its_statements(url):
    engine, wire = await engine_and_wire(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT 1 + 1"))
        assert wire.take() == ["BEGIN", "COMMIT"]
    finally:
        await engine.dispose()


async def test_an_autocommit_connection_sends_no_begin_or_rollback(url):
    engine, wire = await engine_and_wire(url)
    try:
        async with autocommit(engine) as conn:
            assert await conn.scalar(sa.text("SELECT 40 + 2")) == 42
        assert wire.take() == []
        async with engine.begin() as conn:  # the connection is transactional again
            await conn.execute(sa.text("SELECT 1 + 1"))
        assert [q.split()[0] for q in wire.take()] == ["BEGIN", "COMMIT"]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("ping_after_idle", "pinged"),
    [(60, False), (0, True)],
    ids=["back-in-use-at-once-not-pinged", "idle-pinged-before-use"],
)
async def test_only_an_idle_connection_is_pinged(url, ping_after_idle, pinged):
    engine, wire = await engine_and_wire(url, ping_after_idle=ping_after_idle)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1 + 1"))
        assert ("SELECT 1" in wire.take()) is pinged
    finally:
        await engine.dispose()


async def test_a_statement_sent_around_the_adapter_never_runs_outside_its_transaction(engine):
    with pytest.raises(OutsideTransaction):
        async with engine.begin() as conn:
            connection = await driver(conn)
            await connection.execute("COMMIT")  # the server's transaction ends behind the adapter
            await driver(conn)  # a row written now would commit on its own


async def committed_marks(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(sa.text("SELECT count(*) FROM committed_mark"))


async def test_a_transaction_cancelled_after_the_server_began_it_leaves_nothing_open(
    engine, database, database_proxy, transactions_left_open
):
    """The server ran BEGIN, and the task was cancelled before the answer came back (a handler
    stopped with its broker connection, say). Were the connection back in the pool inside that
    transaction, every later one on it would be a savepoint within it: committed as far as the
    service knows, never seen by anyone else."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE committed_mark (n int)"))
    served = make_engine(  # not pinged: no SELECT 1 waits behind the held replies
        database_proxy.carrying(database.admin_url), pool_size=1, ping_after_idle=60
    )
    try:
        async with served.begin() as opened:  # the pool's one connection, opened
            await opened.execute(sa.text("SELECT 1"))
            raw = (await opened.get_raw_connection()).driver_connection

        async def begin() -> None:
            async with served.begin() as beginning:
                await driver(beginning)

        database_proxy.hold_replies()
        beginning = asyncio.create_task(begin())
        await eventually(transactions_left_open, message="BEGIN ran")
        beginning.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beginning
        assert raw.is_closed()  # at once, not left for the next checkout to find
        database_proxy.release_replies()

        async with served.begin() as after:
            await after.execute(sa.text("INSERT INTO committed_mark VALUES (1)"))
        assert await committed_marks(engine) == 1

        async def none_left_open() -> bool:  # a closed connection's backend ends in its time
            return await transactions_left_open() == 0

        await eventually(none_left_open, message="no transaction left open")
    finally:
        database_proxy.release_replies()  # nothing waits on a held answer while closing
        await served.dispose()


@pytest.mark.parametrize("by_whose_account", ["the server's", "asyncpg's"])
async def test_a_connection_given_back_inside_a_transaction_is_not_handed_out_again(
    url, by_whose_account
):
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).dbapi_connection.driver_connection
            # Behind SQLAlchemy's back, so its reset cannot end it.
            if by_whose_account == "the server's":
                await raw.execute("BEGIN")
            else:  # a transaction asyncpg still counts as its own: the next would be a savepoint
                await raw.transaction().start()
                await raw.execute("ROLLBACK")
        async with engine.connect() as conn:
            raw_again = (await conn.get_raw_connection()).dbapi_connection.driver_connection
            assert raw_again is not raw
            assert not raw_again.is_in_transaction()
    finally:
        await engine.dispose()


async def test_driver_reaches_the_asyncpg_connection_a_connection_holds_now(url):
    """driver() reads the asyncpg connection off the SQLAlchemy connection, without a round trip,
    and follows it when the pool replaced an invalidated one."""
    engine = make_engine(url, pool_size=2)
    try:
        async with engine.connect() as conn:
            async with conn.begin():
                first = await driver(conn)
                assert first is (await conn.get_raw_connection()).driver_connection
                assert first.is_in_transaction()
            await conn.invalidate()  # the pool closes `first`; the next use opens another
            async with conn.begin():
                second = await driver(conn)
                assert second is (await conn.get_raw_connection()).driver_connection
                assert second is not first and second.is_in_transaction()
    finally:
        await engine.dispose()


async def test_driver_on_a_connection_sqlalchemy_no_longer_holds_does_as_sqlalchemy_does(url):
    """Invalidated (the server went away under it) or closed, the connection is SQLAlchemy's to
    replace or refuse: driver() neither hands out the dead asyncpg connection nor writes outside
    the transaction that was lost with it."""
    engine = make_engine(url, pool_size=2)
    try:
        async with engine.connect() as conn:
            dead = await driver(conn)
            await conn.rollback()
            await conn.invalidate()
            assert conn.invalidated
            revived = await driver(conn)  # as conn.execute() would: a new connection, begun
            assert revived is not dead and dead.is_closed()
            assert revived.is_in_transaction()
            assert await revived.fetchval("SELECT 1") == 1
            await conn.commit()

        async with engine.connect() as conn:
            transaction = await conn.begin()
            await driver(conn)
            await conn.invalidate()
            with pytest.raises(sa.exc.PendingRollbackError):
                await driver(conn)  # its transaction is gone: the caller must roll back
            await transaction.rollback()

        conn = await engine.connect()
        await conn.close()
        with pytest.raises(sa.exc.ResourceClosedError):
            await driver(conn)
    finally:
        await engine.dispose()


async def test_a_row_through_asyncpg_reads_as_sqlalchemys_does(engine):
    """AsyncpgStatement's rows give the values SQLAlchemy's would, by name and as a mapping."""
    things = sa.Table(
        "things",
        sa.MetaData(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("cents", sa.BigInteger, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    async with engine.begin() as conn:
        await conn.run_sync(things.metadata.create_all)
        await conn.execute(
            sa.insert(things),
            {"id": uuid.uuid4(), "name": "one", "cents": 2**40, "body": {"a": [1, "b"]}},
        )
    query = sa.select(things).where(things.c.name == sa.bindparam("wanted"))
    async with autocommit(engine) as conn:
        expected = (await conn.execute(query, {"wanted": "one"})).one()
        row = await AsyncpgStatement(query).one(conn, wanted="one")
        assert row._mapping == row._asdict() == expected._asdict()
        assert (row.id, row.body, row.at) == (expected.id, expected.body, expected.at)
        assert await AsyncpgStatement(query).first(conn, wanted="none") is None
        with pytest.raises(sa.exc.NoResultFound):
            await AsyncpgStatement(query).one(conn, wanted="none")
        with pytest.raises(AttributeError):
            row.missing  # noqa: B018


async def test_statements_on_asyncpg_end_with_the_transaction_sqlalchemy_knows(url):
    """On a connection nothing began (engine.connect()), driver() begins the transaction as
    conn.execute() would, so conn.rollback() and conn.commit() end what asyncpg wrote."""
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            raw = await driver(conn)
            assert conn.in_transaction() and raw.is_in_transaction()
            await conn.rollback()
            assert not raw.is_in_transaction()
    finally:
        await engine.dispose()
