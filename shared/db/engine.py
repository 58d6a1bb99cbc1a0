"""SQLAlchemy's engine on the same database, for tests and scripts that arrange and inspect rows
with it; the services run on `Database` (shared.db.pool)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.util import await_only

from shared.db.pool import server_settings


def async_url(url: str) -> str:
    """Accept plain postgresql:// URLs and point them at the asyncpg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    pool_timeout: float = 30.0,
    statement_timeout_ms: int | None = None,
    ping_after_idle: float = 1.0,
) -> AsyncEngine:
    """A SQLAlchemy engine on the same database, for tests and scripts that arrange and inspect
    rows with SQLAlchemy; the services run on `Database`. Its idle connections are checked before
    use, so the pool serves after an outage.

    A connection back in use within `ping_after_idle` seconds is not pinged: under load that
    saves a round trip per transaction. One the server closed (restart, terminate) is still
    noticed for free; one cut silently in that window fails its transaction once, and the pool
    replaces it.
    """
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args={"server_settings": server_settings(statement_timeout_ms)},
    )
    pool = engine.sync_engine.pool
    # Idle time counts from the moment a connection was opened or last given back.
    event.listen(pool, "connect", _known_good_now)
    event.listen(pool, "checkin", _known_good_now)
    event.listen(pool, "checkout", _pinger(ping_after_idle))
    return engine


def _known_good_now(dbapi_connection, connection_record) -> None:
    connection_record.info["returned_at"] = time.monotonic()


def _pinger(after_idle: float):
    def ping(dbapi_connection, connection_record, connection_proxy) -> None:
        """One trivial query (SQLAlchemy's own pre-ping costs three round trips here)."""
        connection = dbapi_connection.driver_connection
        idle = time.monotonic() - connection_record.info.get("returned_at", 0.0)
        try:
            if connection.is_closed():
                raise ConnectionError("closed")
            if idle >= after_idle:
                await_only(connection.execute("SELECT 1"))
            if connection._top_xact is not None or connection.is_in_transaction():
                # Given back inside a transaction, by asyncpg's account (set before its BEGIN
                # is even sent) or by the server's last word: whatever ran on it next would be
                # part of that transaction, never committed on its own. asyncpg's own pool
                # checks the same two before it reuses a connection.
                raise ConnectionError("left inside a transaction")
        except Exception as error:
            # The pool drops this connection and checks out a fresh one.
            raise exc.DisconnectionError(f"stale connection: {error!r}") from error

    return ping


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements each run in a transaction of their own (`Database.autocommit`).

    One round trip per query instead of three (BEGIN, query, ROLLBACK). Two queries may see two
    different moments, so use it where one statement answers, or where that does not matter.
    """
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
