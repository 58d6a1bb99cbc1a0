"""Async SQLAlchemy engine and sessions for one service's schema."""

from __future__ import annotations

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only


def async_url(url: str) -> str:
    """Accept plain postgresql:// URLs and point them at the asyncpg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int | None = None
) -> AsyncEngine:
    """An engine whose connections are checked before use, so the pool serves again after an outage."""
    server_settings = {"application_name": "switchyard"}
    if statement_timeout_ms is not None:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"server_settings": server_settings},
    )
    event.listen(engine.sync_engine.pool, "connect", _fresh)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    return engine


def _fresh(dbapi_connection, connection_record) -> None:
    connection_record.info["fresh"] = True  # just opened: nothing to check yet


def _ping(dbapi_connection, connection_record, connection_proxy) -> None:
    """One trivial query per checkout (SQLAlchemy's own pre-ping costs three round trips here)."""
    if connection_record.info.pop("fresh", False):
        return
    connection = dbapi_connection.driver_connection
    try:
        if connection.is_closed():
            raise ConnectionError("closed")
        await_only(connection.execute("SELECT 1"))
    except Exception as error:
        # The pool drops this connection and checks out a fresh one.
        raise exc.DisconnectionError(f"stale connection: {error!r}") from error


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
