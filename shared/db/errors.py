"""What a database error means for the work: a broken rule, an outage, or a bug of ours."""

from __future__ import annotations

from typing import Literal

import asyncpg
from sqlalchemy import exc


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
    connection slot taken, pool exhausted): the same work succeeds once that is over (work that
    may have committed before a connection was cut is idempotent: inbox, idempotency keys)."""
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
