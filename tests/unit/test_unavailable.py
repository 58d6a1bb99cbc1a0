"""Which database errors are an outage (wait, try again) and which are the work's own fault."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc

from shared.db import (
    ConnectionLost,
    NoConnection,
    broken_rule,
    is_statement_timeout,
    is_unavailable,
)

pytestmark = pytest.mark.unit


def _wrapped(cause: BaseException) -> exc.DBAPIError:
    """How SQLAlchemy's asyncpg dialect wraps a driver error: the asyncpg one is the cause."""
    adapted = Exception(str(cause))
    adapted.__cause__ = cause
    return exc.DBAPIError("SELECT 1", None, adapted)


def _as_is(cause: BaseException) -> BaseException:
    """A statement run on asyncpg directly (shared.db.driver) raises asyncpg's own error."""
    return cause


def _adapted(cause: BaseException) -> BaseException:
    """The adapter's own error, when it begins the transaction for such a statement."""
    adapted = Exception(str(cause))
    adapted.__cause__ = cause
    return adapted


arriving = pytest.mark.parametrize("arrived", [_wrapped, _as_is, _adapted])


@pytest.mark.parametrize(
    "cause",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
        asyncpg.exceptions.ConnectionFailureError("connection failure"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
@arriving
def test_a_server_that_cannot_serve_now_is_an_outage(cause, arrived):
    assert is_unavailable(arrived(cause))


@pytest.mark.parametrize(
    "cause",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied for schema orders"),
        # The server answers, but this work is too slow: a message that always times out must
        # reach its dead letters, not be retried for ever.
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    ],
    ids=lambda e: type(e).__name__,
)
@arriving
def test_bad_data_and_bugs_are_not_an_outage(cause, arrived):
    assert not is_unavailable(arrived(cause))


def _wrapped_as_interface_error(cause: BaseException) -> exc.InterfaceError:
    """How SQLAlchemy wraps what its adapter translated to the DBAPI's InterfaceError."""
    adapted = Exception(str(cause))
    adapted.__cause__ = cause
    return exc.InterfaceError("SELECT 1", None, adapted)


@pytest.mark.parametrize("arrived", [_wrapped, _wrapped_as_interface_error, _as_is, _adapted])
def test_a_value_asyncpg_cannot_encode_is_not_an_outage(arrived):
    # asyncpg raises its client-side DataError before anything is sent; it is an InterfaceError
    # as well as a ValueError, and exported under no public name of its own.
    from asyncpg.exceptions._base import DataError

    cannot_encode = DataError("invalid input for query argument $1: 'x' (an integer is required)")
    assert not is_unavailable(arrived(cannot_encode))
    # A connection that closed under a statement is still an outage, however it arrives.
    assert is_unavailable(arrived(asyncpg.exceptions.ConnectionDoesNotExistError("closed")))


@arriving
def test_a_statement_timeout_is_told_apart(arrived):
    timeout = asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")
    assert is_statement_timeout(arrived(timeout))
    assert not is_statement_timeout(arrived(asyncpg.exceptions.UniqueViolationError("dup")))


@arriving
def test_a_broken_constraint_is_told_apart(arrived):
    assert broken_rule(arrived(asyncpg.exceptions.UniqueViolationError("dup"))) == "conflict"
    assert broken_rule(arrived(asyncpg.exceptions.NotNullViolationError("null"))) == "invalid"
    assert broken_rule(arrived(asyncpg.exceptions.UndefinedColumnError("no column"))) is None


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),  # no pooled connection came free in time
        NoConnection("the pool hands out no connection: pool is closing"),
        NoConnection("the database is closed"),
        ConnectionLost("the connection closed: ProtocolError()"),
    ],
    ids=["acquire-timeout", "pool-closing", "database-closed", "connection-lost"],
)
def test_what_the_services_pool_raises_when_it_cannot_serve_is_an_outage(error):
    assert is_unavailable(error)


@pytest.mark.parametrize("arrived", [_as_is, _adapted])
def test_a_connection_misused_is_a_bug_not_an_outage(arrived):
    """asyncpg's InterfaceError on a connection that is open: retrying would fail the same way,
    so a message reaches its dead letters and a request answers 500."""
    misuse = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert not is_unavailable(arrived(misuse))
