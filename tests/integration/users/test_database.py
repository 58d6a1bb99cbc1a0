"""The database behaviour users relies on: savepoints, constraint errors, timeouts, the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from yarl import URL

from shared.db import Database, broken_rule, is_statement_timeout
from shared.runtime import Runtime
from tests.integration.users.probes import count, outbox_types
from tests.support.eventually import eventually
from tests.support.proxy import TcpProxy
from users import db, handlers
from users.app import wiring
from users.domain import EmailTaken

pytestmark = pytest.mark.integration


@pytest.fixture
async def runtime(users_settings) -> AsyncIterator[Runtime]:
    """The users runtime, unstarted: no brokers, only its database pool."""
    runtime = Runtime(users_settings(db_pool_size=2, db_statement_timeout_ms=300), wiring())
    yield runtime
    await runtime.database.close()


@pytest.fixture
async def one_connection(users_settings) -> AsyncIterator[Database]:
    """The users database on a pool of one connection."""
    database = Database(users_settings().database_url, size=1)
    yield database
    await database.close()


async def backend_pid(database: Database) -> int:
    async with database.autocommit() as conn:
        return await conn.fetchval("SELECT pg_backend_pid()")


async def test_inner_savepoint_rolls_back_while_outer_transaction_commits(runtime, admin):
    async with runtime.database.transaction() as tx:
        await handlers.register_user(tx, email="outer@example.com", name="Outer")
        with pytest.raises(RuntimeError):
            async with tx.transaction():
                await handlers.register_user(tx, email="inner@example.com", name="Inner")
                raise RuntimeError("give up the inner part")
        await handlers.register_user(tx, email="after@example.com", name="After")

    async with admin.connect() as conn:
        emails = set((await conn.execute(sa.select(db.users.c.email))).scalars())
    assert emails == {"outer@example.com", "after@example.com"}
    assert await outbox_types(admin) == ["user.registered", "user.registered"]


async def test_unique_violation_maps_to_email_taken(runtime, admin):
    async with runtime.database.transaction() as tx:
        await db.insert_user(tx, user_id=uuid.uuid4(), email="one@example.com", name="One")
        two = await db.insert_user(tx, user_id=uuid.uuid4(), email="2@example.com", name="2")

    async with runtime.database.transaction() as tx:
        with pytest.raises(EmailTaken) as raised:
            await db.update_user(tx, two.id, {"email": "ONE@example.com"})
        cause = raised.value.__cause__
        assert isinstance(cause, asyncpg.UniqueViolationError)
        assert cause.sqlstate == "23505"
        assert db.violated_constraint(cause) == db.EMAIL_KEY
        # Only the savepoint was lost: the transaction goes on and commits.
        await db.update_user(tx, two.id, {"name": "Two"})

    async with admin.connect() as conn:
        names = set((await conn.execute(sa.select(db.users.c.name))).scalars())
    assert names == {"One", "Two"}


async def test_inserting_a_taken_email_is_email_taken_and_keeps_the_transaction(runtime, admin):
    async with runtime.database.transaction() as conn:
        await db.insert_user(conn, user_id=uuid.uuid4(), email="one@example.com", name="One")
        with pytest.raises(EmailTaken):
            await db.insert_user(conn, user_id=uuid.uuid4(), email="One@Example.com", name="1")
        await db.insert_user(conn, user_id=uuid.uuid4(), email="two@example.com", name="Two")

    assert await count(admin, db.users) == 2


async def test_a_foreign_key_violation_names_the_key(runtime):
    async with runtime.database.transaction() as conn:  # users has no foreign key: add one
        await conn.execute(NOTES)

    async with runtime.database.autocommit() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError) as raised:
            await conn.execute(
                "INSERT INTO users.notes (user_id, text) VALUES ($1, 'orphan')", uuid.uuid4()
            )
    assert raised.value.sqlstate == "23503"
    assert db.violated_constraint(raised.value) == "notes_user_fk"
    assert broken_rule(raised.value) == "conflict"


NOTES = """CREATE TABLE users.notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL CONSTRAINT notes_user_fk REFERENCES users.users (id),
    text text NOT NULL
)"""


async def test_a_not_null_violation_names_the_column(runtime):
    async with runtime.database.autocommit() as conn:
        with pytest.raises(asyncpg.NotNullViolationError) as raised:
            await conn.execute(
                "INSERT INTO users.users (id, email) VALUES ($1, 'n@x.io')", uuid.uuid4()
            )
    assert raised.value.sqlstate == "23502"
    assert raised.value.column_name == "name"
    assert broken_rule(raised.value) == "invalid"


async def test_check_violation_names_the_stats_constraint(runtime):
    async with runtime.database.transaction() as conn:
        user = await db.insert_user(conn, user_id=uuid.uuid4(), email="c@x.io", name="C")
    async with runtime.database.autocommit() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as raised:
            await conn.execute("UPDATE users.users SET orders_paid = -1 WHERE id = $1", user.id)
    assert raised.value.sqlstate == "23514"
    assert db.violated_constraint(raised.value) == "users_orders_paid_not_negative"


async def test_statement_timeout_surfaces_as_a_clear_error(runtime):
    # The runtime's database was built from db_statement_timeout_ms=300.
    async with runtime.database.autocommit() as conn:
        with pytest.raises(asyncpg.QueryCanceledError) as raised:
            await conn.execute("SELECT pg_sleep(5)")
    assert "canceling statement due to statement timeout" in str(raised.value)
    assert is_statement_timeout(raised.value)
    assert await backend_pid(runtime.database)  # and the pool serves on


async def test_more_work_than_the_pool_holds_completes_by_queueing(runtime, admin):
    pool_size = runtime.settings.db_pool_size
    in_use: list[int] = []

    async def register(i: int) -> None:
        async with runtime.database.transaction() as conn:
            await handlers.register_user(conn, email=f"q{i}@example.com", name=f"Q{i}")
            pool = runtime.database.pool
            in_use.append(pool.get_size() - pool.get_idle_size())
            await conn.execute("SELECT pg_sleep(0.02)")  # hold the connection a bit

    await asyncio.gather(*(register(i) for i in range(6 * pool_size)))

    assert max(in_use) == pool_size  # the pool was full and never grew: the rest waited
    assert await count(admin, db.users) == 6 * pool_size


async def test_pool_serves_again_after_a_failed_statement(one_connection, admin):
    database = one_connection
    before = await backend_pid(database)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with database.transaction() as conn:
            await conn.execute("SELECT 1 / 0")
    async with database.transaction() as conn:
        await handlers.register_user(conn, email="again@example.com", name="Again")
    # The one pooled connection was rolled back and reused, not thrown away.
    assert await backend_pid(database) == before
    assert await count(admin, db.users) == 1


async def test_pool_recovers_after_an_idle_connection_is_killed(users_settings, admin):
    # ping_after_idle=0: every checkout counts as idle, so the pool checks before handing out.
    database = Database(users_settings().database_url, size=1, ping_after_idle=0)
    try:
        victim = await backend_pid(database)
        async with admin.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.pg_terminate_backend(victim)))
        async with database.transaction() as tx:
            await handlers.register_user(tx, email="revived@example.com", name="Revived")
        assert await backend_pid(database) != victim
    finally:
        await database.close()
    assert await count(admin, db.users) == 1


async def test_a_connection_lost_during_the_ping_is_replaced(users_settings, admin):
    # The connection dies while the pool's ping waits for its answer: asyncpg takes the lost
    # connection back on its own before the ping's error arrives, and the pool still opens
    # another one for the same transaction.
    url = URL(users_settings().database_url)
    async with TcpProxy(url.host, url.port) as proxy:
        database = Database(proxy.carrying(str(url)), size=1, ping_after_idle=0)
        try:
            victim = await backend_pid(database)
            proxy.hold_replies()
            work = asyncio.create_task(register(database, "pinged@example.com"))

            async def pinged() -> bool:  # the server ran the ping; its answer is held
                async with admin.connect() as conn:
                    query = sa.text("SELECT query FROM pg_stat_activity WHERE pid = :pid")
                    return await conn.scalar(query, {"pid": victim}) == "SELECT 1"

            await eventually(pinged, message="the ping reached the server")
            proxy.cut()
            proxy.restore()
            proxy.release_replies()
            await asyncio.wait_for(work, 10)
            assert await backend_pid(database) != victim
        finally:
            await database.close()
    assert await count(admin, db.users) == 1


async def register(database: Database, email: str) -> None:
    async with database.transaction() as tx:
        await handlers.register_user(tx, email=email, name="Someone")


async def test_a_connection_the_server_closed_is_replaced_before_use(users_settings, admin):
    # Used moments ago, so not pinged (ping_after_idle=60): the pool still notices, for free,
    # a connection the server closed (restart, terminate), and no transaction fails for it.
    database = Database(users_settings().database_url, size=1, ping_after_idle=60)
    try:
        async with database.autocommit() as conn:
            victim = await conn.fetchval("SELECT pg_backend_pid()")
        async with admin.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.pg_terminate_backend(victim, 5000)))
        # The server has closed it; once the client has read that, it is known to be gone.
        await eventually(lambda: database.pool.get_size() == 0, message="the client saw the close")

        async with database.transaction() as tx:
            await handlers.register_user(tx, email="revived@example.com", name="Revived")

        assert await backend_pid(database) != victim
    finally:
        await database.close()
    assert await count(admin, db.users) == 1
