"""One service's database: an asyncpg pool running statements written with SQLAlchemy Core."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, TypeAlias

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.util import await_only

log = structlog.get_logger(__name__)


def async_url(url: str) -> str:
    """Accept plain postgresql:// URLs and point them at the asyncpg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


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
    README, "A fifth round"), and an order takes six or seven.

    `transaction()` commits its statements together, or none of them; `reading()` runs each
    statement on its own (one round trip instead of BEGIN, statement, ROLLBACK). A connection
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
    async def reading(self) -> AsyncIterator[Connection]:
        """A connection whose statements each run and commit on their own.

        Two statements may see two different moments: use it where one statement answers, or
        where that does not matter.
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
                # Whatever the statement's error, the connection is gone with its transaction:
                # nothing was committed, and the same work passes on another connection.
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
    """A connection closed under a statement (the server ended it, a protocol error): nothing of
    its transaction was committed. As a connection error, it makes the work wait and try again
    (`is_unavailable`)."""


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
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads: each statement runs in its own implicit transaction.

    One round trip per query instead of three (BEGIN, query, ROLLBACK). Two queries may see two
    different moments, so use it where one statement answers, or where that does not matter.
    """
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def driver(conn: Connection | AsyncConnection) -> Connection:
    """The asyncpg connection to run a statement on: `conn` itself, or the one under a
    SQLAlchemy connection (a test's or a script's), inside that connection's transaction.

    So every statement of the services (`AsyncpgStatement`, the inbox and outbox rows) runs the
    same on a `Database` connection and in a transaction a test holds through SQLAlchemy. Their
    errors are asyncpg's own; the classifiers below read both kinds.
    """
    if not isinstance(conn, AsyncConnection):
        return conn
    sync = conn.sync_connection
    if sync is None or sync.invalidated or sync.closed:
        fairy = await conn.get_raw_connection()  # raises what SQLAlchemy raises for it
    else:
        fairy = sync.connection  # held for the connection's life: no await, no greenlet switch
    adapted = fairy.dbapi_connection
    if adapted.isolation_level == "autocommit":
        return adapted.driver_connection
    if not conn.in_transaction():
        # As conn.execute() would begin one (engine.connect(), then statements): a transaction
        # SQLAlchemy knows of, so conn.commit() and conn.rollback() end what is written below.
        await conn.begin()
    if adapted._transaction is None:
        # SQLAlchemy's asyncpg adapter sends BEGIN with the first statement it runs itself; a
        # statement sent around it first would run, and commit, outside the transaction.
        try:
            await adapted._start_transaction()
        except BaseException as error:
            # asyncpg keeps a transaction that failed to start as its connection's own, and the
            # server may have run the BEGIN (a task cancelled while the answer was on its way):
            # every later transaction on this connection would be a savepoint inside that one,
            # committed as far as the service knows and never seen by anyone else. Under its
            # own statements SQLAlchemy invalidates the connection on a cancel or a disconnect;
            # here it is ours to do, whatever the error. Closed, it is replaced at its next
            # checkout (`_pinger`).
            if not adapted.driver_connection.is_closed():
                adapted.driver_connection.terminate()
                log.warning("db.unstarted_transaction_closed", error=repr(error))
            raise
    if not adapted.driver_connection.is_in_transaction():
        # The adapter believes in a transaction the server does not have (one of a connection
        # lost meanwhile, say): a row written now would commit on its own, apart from the rest.
        raise OutsideTransaction("the adapter's transaction is not open on the server")
    return adapted.driver_connection


class OutsideTransaction(ConnectionError):
    """A statement would have run outside its transaction. As a connection error, it makes the
    work wait and try again (`is_unavailable`); nothing of the transaction was committed."""


class AsyncpgStatement:
    """A Core statement, run on asyncpg (a `Database` connection, or the one under a SQLAlchemy
    connection: `driver`).

    SQLAlchemy compiles it once per set of parameter names, to the SQL it would send itself; a
    call then costs asyncpg's share alone: SQLAlchemy's own execution costs about 0.1 ms of CPU
    a statement more (README, "Benchmarks"). What SQLAlchemy would do at each call
    instead is refused when compiling: converting values either way (JSON, enums, arrays),
    expanding IN lists, Python-side defaults, values computed by a callable. So a row comes back
    with the values SQLAlchemy would give, read the same way (`Row`). A parameter left out is
    an error, as through SQLAlchemy. The errors are asyncpg's own (the classifiers below read
    them; `except sa.exc...` does not).
    """

    def __init__(self, statement: sa.Executable) -> None:
        self._statement = statement
        # Per set of parameter names: the SQL, and each positional value's name or literal.
        self._compiled: dict[tuple[str, ...], tuple[str, list[tuple[str, object]]]] = {}

    async def execute(self, conn: Connection | AsyncConnection, **params: object) -> None:
        sql, values = self._bound(params)
        await (await driver(conn)).execute(sql, *values)

    async def first(self, conn: Connection | AsyncConnection, **params: object) -> Row | None:
        """The first row, or None (SQLAlchemy's `Result.first()`)."""
        sql, values = self._bound(params)
        record = await (await driver(conn)).fetchrow(sql, *values)
        return None if record is None else Row(record)

    async def one(self, conn: Connection | AsyncConnection, **params: object) -> Row:
        """The one row; NoResultFound when there is none (SQLAlchemy's `Result.one()`, for a
        statement that returns at most one)."""
        row = await self.first(conn, **params)
        if row is None:
            raise exc.NoResultFound("No row was found when one was required")
        return row

    async def all(self, conn: Connection | AsyncConnection, **params: object) -> list[Row]:
        sql, values = self._bound(params)
        return [Row(record) for record in await (await driver(conn)).fetch(sql, *values)]

    def _bound(self, params: dict[str, object]) -> tuple[str, list[object]]:
        names = tuple(params)
        compiled = self._compiled.get(names)
        if compiled is None:
            compiled = self._compiled[names] = self._compile(names)
        sql, slots = compiled
        return sql, [params.get(name, literal) for name, literal in slots]

    def _compile(self, names: tuple[str, ...]) -> tuple[str, list[tuple[str, object]]]:
        compiled = self._statement.compile(dialect=_ASYNCPG, column_keys=list(names))
        binds = compiled.binds
        per_call = (
            compiled._bind_processors  # converters SQLAlchemy applies to each value
            or compiled.post_compile_params  # IN lists and literals rendered at each call
            or compiled.insert_prefetch  # Python-side defaults computed at each call
            or compiled.update_prefetch
            or [n for n in compiled.positiontup if binds[n].callable is not None]
            or [c[0] for c in compiled._result_columns if _converts_results(c[3])]
        )
        if per_call:
            raise TypeError(f"with {names}, SQLAlchemy would have work to do at each call")
        if missing := [n for n in compiled.positiontup if n not in names and binds[n].required]:
            raise TypeError(f"a value is required for {missing}")
        # The statement's own values (a 0 in a comparison, say) stand where no parameter does.
        return compiled.string, [(n, binds[n].effective_value) for n in compiled.positiontup]


def json_text(name: str) -> sa.Cast:
    """A JSON column's value, bound as JSON text (`json.dumps(...)`) and cast by Postgres.

    For an AsyncpgStatement that writes JSON: SQLAlchemy's own JSON binding would serialise the
    value at each call, which AsyncpgStatement refuses. `insert(t).values(items=json_text("items"))`
    is called with `items=json.dumps(items)`.
    """
    return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSONB)


def _converts_results(type_: sa.types.TypeEngine) -> bool:
    """SQLAlchemy converts each value of this type coming back (an enum, a float as Decimal)."""
    try:
        return type_.dialect_impl(_ASYNCPG).result_processor(_ASYNCPG, None) is not None
    except Exception:  # its converter depends on the type the server names: it has one
        return True


class Row:
    """A row asyncpg returned, read as SQLAlchemy's rows are: by column name (`row.status`), or
    as a mapping (`row._mapping`, `row._asdict()`)."""

    __slots__ = ("_record",)

    def __init__(self, record: asyncpg.Record) -> None:
        self._record = record

    def __getattr__(self, name: str) -> object:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, object]:
        return dict(self._record.items())

    @property
    def _mapping(self) -> dict[str, object]:
        return self._asdict()

    def __repr__(self) -> str:
        return f"Row({self._asdict()!r})"


_ASYNCPG = postgresql.asyncpg.dialect()


def quoted(table: sa.Table) -> str:
    """The table's schema-qualified name for SQL text."""
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


async def page_of(
    conn: Connection, table: sa.Table, *where, offset: int, limit: int
) -> tuple[list[Row], int]:
    """One page of `table`'s rows matching `where`, oldest first, and how many match in all.

    The count and the page are two statements, each seeing its own moment (READ COMMITTED, in a
    transaction or not): read them through `Database.reading()`, which spares the BEGIN and
    COMMIT. Their filter differs from call to call, so each is compiled at its call: a list is
    not on any message's path.
    """
    count = sa.select(sa.func.count().label("total")).select_from(table).where(*where)
    page = (
        sa.select(table)
        .where(*where)
        .order_by(table.c.created_at, table.c.id)
        .offset(offset)
        .limit(limit)
    )
    total = await AsyncpgStatement(count).one(conn)
    return await AsyncpgStatement(page).all(conn), total.total


def violated_constraint(error: BaseException) -> str | None:
    """The constraint or unique index Postgres named for a failed statement (never its text)."""
    return getattr(_driver_error(error), "constraint_name", None)


# A statement the caller's request made break a rule the tables keep: a clash with stored rows, or
# a value a table refuses. Either is the caller's to fix, never worth a retry.
_CONFLICTS = (
    asyncpg.UniqueViolationError,
    asyncpg.ForeignKeyViolationError,
    asyncpg.ExclusionViolationError,
)
_REFUSED_VALUES = (asyncpg.NotNullViolationError, asyncpg.CheckViolationError)


def broken_rule(error: BaseException) -> Literal["conflict", "invalid"] | None:
    """How a failed statement broke a constraint: `conflict` with stored rows (unique, foreign key,
    exclusion), `invalid` for a value a table refuses (not null, check); None for any other error."""
    cause = _driver_error(error)
    if isinstance(cause, _CONFLICTS):
        return "conflict"
    if isinstance(cause, _REFUSED_VALUES):
        return "invalid"
    return None


def is_unavailable(error: BaseException) -> bool:
    """The database cannot serve now (down, starting or shutting down, connection cut, every
    connection slot taken, pool exhausted): nothing was committed, and the same work succeeds
    once that is over."""
    if isinstance(_driver_error(error), ValueError):
        # asyncpg's client-side DataError, a value it cannot encode for its parameter, is an
        # InterfaceError too (and SQLAlchemy wraps it as one): a bug of ours, never an outage.
        return False
    # SQLAlchemy's own errors, for tests and scripts that hold its connections; the services'
    # `Database` reports an outage as ConnectionLost or NoConnection (OSError) instead.
    if isinstance(error, OSError | exc.TimeoutError | exc.InterfaceError | exc.OperationalError):
        return True
    if isinstance(error, exc.InvalidRequestError) and "connection is closed" in str(error):
        return True  # the pool could not hand out a working connection
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    cause = _driver_error(error)
    # Operator intervention (class 57): the server is starting up, shutting down or recovering
    # from a crash; a cancelled statement (57014) is the work's own doing. Too many connections
    # (53300): every slot of the server, the database or the role is taken, and one frees up as
    # other clients go. asyncpg's own InterfaceError is not here: on a connection that closed
    # under the work, `Database` raises ConnectionLost instead; on one that is open, it is a
    # misuse (two statements at once on one connection, say): a bug, not an outage.
    stopped = asyncpg.exceptions.OperatorInterventionError
    crowded = asyncpg.exceptions.TooManyConnectionsError
    return isinstance(
        cause, OSError | asyncpg.PostgresConnectionError | stopped | crowded
    ) and not isinstance(cause, asyncpg.QueryCanceledError)


def is_retry_later(error: BaseException) -> bool:
    """Nothing was committed and the same request may pass later: an HTTP caller gets a 503."""
    return is_unavailable(error) or is_statement_timeout(error)


def is_statement_timeout(error: BaseException) -> bool:
    """A statement ran past `statement_timeout` (or was cancelled): rolled back, may pass later."""
    return isinstance(_driver_error(error), asyncpg.QueryCanceledError)


def _driver_error(error: BaseException) -> BaseException | None:
    """asyncpg's own exception: behind SQLAlchemy's wrapper of it, behind its adapter's, or
    raised as it is (shared.db.driver)."""
    if isinstance(error, exc.DBAPIError):
        return getattr(error.orig, "__cause__", None) or error.orig
    while error is not None and not isinstance(
        error, asyncpg.PostgresError | asyncpg.InterfaceError | OSError
    ):
        error = error.__cause__
    return error
