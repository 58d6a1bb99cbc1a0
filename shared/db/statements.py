"""Statements written with SQLAlchemy Core, compiled once and run on asyncpg; the rows they give."""

from __future__ import annotations

from types import SimpleNamespace

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.pool import Connection

log = structlog.get_logger(__name__)


async def driver(conn: Connection | AsyncConnection) -> Connection:
    """The asyncpg connection to run a statement on: `conn` itself, or the one under a
    SQLAlchemy connection (a test's or a script's), inside that connection's transaction.

    So every statement of the services (`AsyncpgStatement`, the inbox and outbox rows) runs the
    same on a `Database` connection and in a transaction a test holds through SQLAlchemy. Their
    errors are asyncpg's own; the classifiers (`shared.db.errors`) read both kinds.
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
    a statement more (bench/README.md, "A first round"). What SQLAlchemy would do at each call
    instead is refused when compiling: converting values either way (JSON, enums, arrays),
    expanding IN lists, Python-side defaults, values computed by a callable. So a row comes back
    with the values SQLAlchemy would give, read the same way (`Row`). A parameter left out is
    an error, as through SQLAlchemy, and so is one the statement has no place for (a value that
    would silently go nowhere). The errors are asyncpg's own (`shared.db.errors` reads
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
        if unused := [n for n in names if n not in compiled.positiontup]:
            raise TypeError(f"the statement has no parameter {unused}")
        # The statement's own values (a 0 in a comparison, say) stand where no parameter does.
        return compiled.string, [(n, binds[n].effective_value) for n in compiled.positiontup]


def json_text(name: str) -> sa.Cast:
    """A JSON column's value, bound as JSON text (`json.dumps(...)`) and cast by Postgres.

    For an AsyncpgStatement that writes JSON: SQLAlchemy's own JSON binding would serialise the
    value at each call, which AsyncpgStatement refuses. `insert(t).values(items=json_text("items"))`
    is called with `items=json.dumps(items)`.
    """
    return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSONB)


def bound(table: sa.Table, *names: str) -> dict[str, sa.BindParameter]:
    """A bind parameter for each of `table`'s columns `names`, named after it: the values of
    `update(table).values(**bound(table, "status"))`, called with `status=...`.

    Nested in a `WITH`, the parameters SQLAlchemy adds for a call's values are anonymous, so the
    call's names would not reach them: a statement with parts has each value bound by name.
    """
    return {name: sa.bindparam(name, type_=table.c[name].type) for name in names}


def as_updated(row: Row, **changes: object) -> SimpleNamespace:
    """`row` as an update writing `changes` will leave it, read by column name as a row is.

    What the update owes is built from it before the update runs, so that the message goes into
    the outbox in the update's own statement (`shared.outbox.owing`).
    """
    return SimpleNamespace(**{**row._asdict(), **changes})


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
    transaction or not): read them through `Database.autocommit()`, which spares the BEGIN and
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
