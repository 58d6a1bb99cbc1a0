"""What a service's database pool (shared.db.Database) sends to Postgres, counted on the wire,
and how it hands out connections after things went wrong."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import (
    AsyncpgStatement,
    ConnectionLost,
    Database,
    NoConnection,
    autocommit,
    is_unavailable,
    json_text,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


class Wire:
    """The simple-protocol queries (BEGIN, COMMIT, ROLLBACK, pings) a pool's one connection sends."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def watch(self, database: Database) -> None:
        """Open the pool's one connection and count from here on."""
        async with database.autocommit() as conn:
            conn.add_query_logger(lambda record: self.queries.append(record.query.strip(" ;")))

    def take(self) -> list[str]:
        taken, self.queries[:] = list(self.queries), []
        return taken


@pytest.fixture
async def url(database) -> AsyncIterator[str]:
    yield database.admin_url


async def watched(url: str, **options) -> tuple[Database, Wire]:
    database, wire = Database(url, size=1, **options), Wire()
    await wire.watch(database)
    return database, wire


async def test_a_transaction_is_begin_and_commit_around_its_statements(url):
    database, wire = await watched(url)
    try:
        async with database.transaction() as conn:
            await conn.execute("SELECT 1 + 1")
        assert wire.take() == ["BEGIN", "SELECT 1 + 1", "COMMIT"]
    finally:
        await database.close()


async def test_a_failed_transaction_is_rolled_back_and_the_connection_serves_on(url):
    database, wire = await watched(url)
    try:
        with pytest.raises(ZeroDivisionError):
            async with database.transaction() as conn:
                await conn.execute("SELECT 1 + 1")
                raise ZeroDivisionError
        assert wire.take() == ["BEGIN", "SELECT 1 + 1", "ROLLBACK"]
        async with database.autocommit() as conn:
            assert await conn.fetchval("SELECT 40 + 2") == 42
    finally:
        await database.close()


async def test_an_autocommit_connection_sends_no_begin_or_rollback(url):
    database, wire = await watched(url)
    try:
        async with database.autocommit() as conn:
            assert await conn.fetchval("SELECT 40 + 2") == 42
        # Given back clean: no reset of its own either (asyncpg's default sends one).
        assert wire.take() == ["SELECT 40 + 2"]
    finally:
        await database.close()


@pytest.mark.parametrize(
    ("ping_after_idle", "pinged"),
    [(60, False), (0, True)],
    ids=["back-in-use-at-once-not-pinged", "idle-pinged-before-use"],
)
async def test_only_an_idle_connection_is_pinged(url, ping_after_idle, pinged):
    database, wire = await watched(url, ping_after_idle=ping_after_idle)
    try:
        async with database.autocommit() as conn:
            await conn.execute("SELECT 1 + 1")
        assert ("SELECT 1" in wire.take()) is pinged
    finally:
        await database.close()


async def test_a_transaction_cancelled_after_the_server_began_it_leaves_nothing_open(
    engine, database, database_proxy, transactions_left_open
):
    """The server ran BEGIN, and the task was cancelled before the answer came back (a handler
    stopped with its broker connection, say). Were the connection back in the pool inside that
    transaction, every later one on it would be a savepoint within it: committed as far as the
    service knows, never seen by anyone else."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE committed_mark (n int)"))
    served = Database(  # not pinged: no SELECT 1 waits behind the held replies
        database_proxy.carrying(database.admin_url), size=1, ping_after_idle=60
    )
    try:
        async with served.autocommit() as opened:  # the pool's one connection, opened
            await opened.execute("SELECT 1")

        async def begin() -> None:
            async with served.transaction() as beginning:
                await beginning.execute("SELECT 1")

        database_proxy.hold_replies()
        beginning = asyncio.create_task(begin())
        await eventually(transactions_left_open, message="BEGIN ran")
        beginning.cancel()
        database_proxy.release_replies()  # the answer arrives after all, to a task that gave up
        with pytest.raises(asyncio.CancelledError):
            await beginning

        async with served.transaction() as after:
            await after.execute("INSERT INTO committed_mark VALUES (1)")
        async with autocommit(engine) as conn:
            marks = await conn.scalar(sa.text("SELECT count(*) FROM committed_mark"))
        assert marks == 1  # committed on its own, not inside the cancelled transaction

        async def none_left_open() -> bool:
            return await transactions_left_open() == 0

        await eventually(none_left_open, message="no transaction left open")
    finally:
        database_proxy.release_replies()  # nothing waits on a held answer while closing
        await served.close()


@pytest.mark.parametrize("by_whose_account", ["the server's", "asyncpg's"])
async def test_a_connection_given_back_inside_a_transaction_is_not_handed_out_so(
    url, by_whose_account
):
    database = Database(url, size=1)
    try:
        async with database.autocommit() as conn:
            if by_whose_account == "the server's":
                await conn.execute("BEGIN")
            else:  # a transaction asyncpg still counts as its own: the next would be a savepoint
                await conn.transaction().start()
                await conn.execute("ROLLBACK")
        async with database.autocommit() as conn:
            assert not conn.is_in_transaction()
            async with conn.transaction():  # a transaction of its own, not a savepoint
                assert await conn.fetchval("SELECT now() = statement_timestamp()") is False
    finally:
        await database.close()


async def test_a_row_through_a_database_reads_as_through_sqlalchemy(engine, url):
    """JSON goes in as text and comes back as Python values, as on SQLAlchemy's connections."""
    things = sa.Table(
        "things",
        sa.MetaData(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    async with engine.begin() as conn:
        await conn.run_sync(things.metadata.create_all)
    insert = AsyncpgStatement(sa.insert(things).values(body=json_text("body")))
    query = AsyncpgStatement(sa.select(things))
    database = Database(url, size=1)
    try:
        async with database.transaction() as conn:
            await insert.execute(conn, id=uuid.uuid4(), body=json.dumps({"a": [1, "b"]}))
            with pytest.raises(asyncpg.DataError, match=r"json\.dumps"):
                await conn.execute("SELECT $1::jsonb", {"a": 1})  # JSON is bound as text
        async with database.autocommit() as conn:
            row = await query.one(conn)
        async with autocommit(engine) as conn:
            expected = (await conn.execute(sa.select(things))).one()
        assert row._asdict() == expected._asdict()
        assert row.body == {"a": [1, "b"]}
    finally:
        await database.close()


async def test_an_error_on_a_connection_closed_under_it_is_an_outage(engine, url):
    """Whatever the work raised, its connection is gone: nothing of it was committed, and the
    same work passes on another connection (a 503, a message tried again)."""
    database = Database(url, size=1)
    try:
        with pytest.raises(ConnectionLost) as raised:
            async with database.autocommit() as conn:
                victim = await conn.fetchval("SELECT pg_backend_pid()")
                async with autocommit(engine) as admin:
                    ended = sa.select(sa.func.pg_terminate_backend(victim, 5000))
                    assert await admin.scalar(ended)
                closed = lambda: database.pool.get_size() == 0  # noqa: E731
                await eventually(closed, message="the client saw the close")
                raise KeyError("an error of the work's own, on a connection that is gone")
        assert is_unavailable(raised.value)
        assert isinstance(raised.value.__cause__, KeyError)
        async with database.autocommit() as conn:  # and the pool serves on
            assert await conn.fetchval("SELECT pg_backend_pid()") != victim
    finally:
        await database.close()


async def test_a_connection_used_for_two_statements_at_once_is_a_bug_not_an_outage(url):
    """asyncpg refuses a second statement while one is in flight on the same connection. That is
    our code's fault: retried, it would fail the same way, so it is not an outage, and the
    connection, still open and whole, serves the next transaction."""
    database = Database(url, size=1)
    try:
        with pytest.raises(asyncpg.InterfaceError) as raised:
            async with database.transaction() as conn:
                backend = await conn.fetchval("SELECT pg_backend_pid()")
                answers = await asyncio.gather(
                    conn.fetchval("SELECT 1"), conn.fetchval("SELECT 2"), return_exceptions=True
                )
                [refused] = [answer for answer in answers if isinstance(answer, Exception)]
                raise refused
        assert "another operation is in progress" in str(raised.value)
        assert not isinstance(raised.value, ConnectionLost)
        assert not is_unavailable(raised.value)
        async with database.transaction() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
    finally:
        await database.close()


async def test_a_database_that_hands_out_no_connection_is_an_outage(url):
    """Closed by its owner, or its pool closed under it: the work waits and tries again."""
    database = Database(url, size=1)
    await database.close()
    with pytest.raises(NoConnection) as closed:
        async with database.autocommit():
            pass
    assert is_unavailable(closed.value)

    pool = await database.open()
    try:
        await pool.close()
        with pytest.raises(NoConnection) as closing:
            async with database.autocommit():
                pass
        assert is_unavailable(closing.value)
        assert isinstance(closing.value.__cause__, asyncpg.InterfaceError)
    finally:
        await database.close()


async def test_a_connection_setting_the_client_refuses_is_a_bug_not_an_outage(url):
    """No server would ever take it: waiting for one would wait for ever."""
    database = Database(url + "?sslmode=sometimes", size=1)
    try:
        with pytest.raises(asyncpg.exceptions.ClientConfigurationError) as raised:
            async with database.autocommit():
                pass
        assert not is_unavailable(raised.value)
    finally:
        await database.close()
