"""The services' database: a pool of asyncpg connections, each transaction BEGIN ... COMMIT."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
import structlog

from shared.db.errors import is_unavailable

log = structlog.get_logger(__name__)


Connection: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""What a service's statements run on: one of its `Database`'s asyncpg connections."""


def plain_url(url: str) -> str:
    """The URL as asyncpg takes it (postgresql://), from any of SQLAlchemy's spellings."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class Database:
    """One service's schema on a pool of asyncpg connections.

    SQLAlchemy Core describes the tables and writes the statements (`AsyncpgStatement` compiles
    each once); asyncpg runs them. A transaction through SQLAlchemy's async engine costs about
    0.15 ms of CPU more than one here (greenlet switches, a task to close each connection;
    bench/README.md, "A fifth round"), and an order takes a connection seven or eight times.

    `transaction()` commits its statements together, or none of them; `autocommit()` runs each
    statement on its own (one round trip instead of BEGIN, statement, COMMIT). A connection
    idle for `ping_after_idle` seconds answers a trivial query before it is handed out, so the
    pool serves again after an outage without failing a request on a connection the server
    closed; a busy connection is trusted, which saves a round trip per transaction.
    """

    def __init__(
        self,
        url: str,
        *,
        size: int = 10,
        acquire_timeout: float = 30.0,
        statement_timeout_ms: int | None = None,
        ping_after_idle: float = 1.0,
    ) -> None:
        self.url = plain_url(url)
        self.size = size
        self._acquire_timeout = acquire_timeout
        self._ping_after_idle = ping_after_idle
        self._server_settings = server_settings(statement_timeout_ms)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()  # two first transactions at once make one pool
        self._closed = False

    async def open(self) -> asyncpg.Pool:
        """Make the pool (a first transaction does it too); it connects on demand, so this
        succeeds while the database is down. A closed database opens again."""
        return await self._opened(reopen=True)

    async def _opened(self, *, reopen: bool = False) -> asyncpg.Pool:
        async with self._opening:
            if reopen:
                self._closed = False
            if self._closed:
                raise NoConnection("the database is closed")
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=0,
                    max_size=self.size,
                    server_settings=self._server_settings,
                    connection_class=_PooledConnection,
                    init=_prepare,
                    reset=_given_back,
                )
            return self._pool

    @property
    def pool(self) -> asyncpg.Pool | None:
        """asyncpg's pool, once open: its sizes are the figures to watch."""
        return self._pool

    async def close(self, grace: float = 10.0) -> None:
        """Close every connection once given back; after `grace` seconds, close them anyway."""
        async with self._opening:  # a pool being made now is made, then closed
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), grace)
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction, committed when the block ends, rolled back if it raises."""
        async with self._connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A connection whose statements each run and commit on their own.

        For a lone read, and for a write that is one statement: Postgres runs a statement in a
        transaction of its own, all of it or none. Two statements may see two different
        moments, and the first stays committed if the second fails: use it where one statement
        does the work, or where that does not matter.
        """
        async with self._connection() as conn:
            yield conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool or await self._opened()
        conn = await self._checked_out(pool)
        # Given back, asyncpg rolls back a transaction left open, and closes a connection it
        # cannot clean (a statement cancelled midway, say): it is never handed out half-used.
        try:
            yield conn
        except BaseException as error:
            lost = isinstance(error, Exception) and _gone(conn)
            await self._give_back(pool, conn)  # the error in flight says more than its own
            if lost and not is_unavailable(error):
                # Whatever the statement's error, the connection is gone with its transaction,
                # and the same work passes on another connection. (A statement or COMMIT whose
                # answer was lost may have committed: work tried again is idempotent here.)
                raise ConnectionLost(f"the connection closed: {error!r}") from error
            raise
        await self._give_back(pool, conn)  # the work is done: committed, if a transaction

    @staticmethod
    async def _give_back(pool: asyncpg.Pool, conn: Connection) -> None:
        try:
            await pool.release(conn)
        except Exception as error:  # asyncpg has closed the connection and taken it back
            log.warning("db.release_failed", error=repr(error))

    async def _checked_out(self, pool: asyncpg.Pool) -> Connection:
        # Each pooled connection may have gone stale at once (the server restarted): one more
        # try than the pool holds reaches a fresh connection.
        for _ in range(self.size + 1):
            try:
                conn = await pool.acquire(timeout=self._acquire_timeout)
            except asyncpg.InterfaceError as error:
                if not pool.is_closing():
                    raise  # a DSN or TLS setting the client refuses: a bug, not an outage
                raise NoConnection(f"the pool hands out no connection: {error}") from error
            if time.monotonic() - conn.given_back_at < self._ping_after_idle:
                return conn
            try:
                await conn.execute("SELECT 1", timeout=_PING_TIMEOUT)  # a silent cut never answers
                return conn
            except Exception as error:  # whatever it is, this connection cannot be trusted
                log.info("db.stale_connection_closed", error=repr(error))
                # A connection lost during the ping may be taken back by asyncpg before this
                # line runs; releasing it again is then nothing, terminating it would raise.
                if not _gone(conn):
                    conn.terminate()  # the pool opens a new one in its place
                await pool.release(conn)
            except BaseException:
                await pool.release(conn)
                raise
        raise NoConnection("no pooled connection answered")


_PING_TIMEOUT = 5.0


def server_settings(statement_timeout_ms: int | None) -> dict[str, str]:
    """What each connection asks of the server at start: its name, and a statement timeout."""
    settings = {"application_name": "switchyard"}
    if statement_timeout_ms is not None:
        settings["statement_timeout"] = str(statement_timeout_ms)
    return settings


def _gone(conn: Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg has taken back a connection that closed
        return True


class NoConnection(ConnectionError):
    """The database hands out no connection now (closed, closing, or none of its connections
    answered): nothing ran, and the work waits and tries again (`is_unavailable`)."""


class ConnectionLost(ConnectionError):
    """A connection closed under a statement (the server ended it, a protocol error): its open
    transaction is gone, though a statement or COMMIT whose answer was lost may have committed
    (the inbox and idempotency keys make a second try harmless). As a connection error, it makes
    the work wait and try again (`is_unavailable`)."""


class _PooledConnection(asyncpg.Connection):
    """An asyncpg connection that knows when it was last given back to its pool."""

    __slots__ = ("given_back_at",)


async def _prepare(conn: _PooledConnection) -> None:
    """A new connection: JSON columns read and written as SQLAlchemy's asyncpg dialect does
    (Python values out, JSON text in), so a row reads the same either way."""
    for type_ in ("json", "jsonb"):
        await conn.set_type_codec(
            type_, schema="pg_catalog", encoder=_json_text, decoder=json.loads, format="text"
        )
    conn.given_back_at = time.monotonic()


async def _given_back(conn: _PooledConnection) -> None:
    """Nothing to reset but the clock: asyncpg has rolled back any transaction left open, and
    these connections never LISTEN, SET or lock beyond one (asyncpg's default reset would send
    a round trip of its own for each)."""
    conn.given_back_at = time.monotonic()


def _json_text(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"JSON is bound as text: json.dumps() it first, not {type(value)}")
    return value
