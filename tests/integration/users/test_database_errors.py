"""Database errors at the HTTP surface: a rule the request broke is the caller's 4xx; a database
that cannot answer in time is a 503 to retry; never a 500.

The users service keeps its own rules in code (a taken email is a 409 it knows of); these tests
add rules to its tables that the code does not know, as a new constraint in a migration would,
so what reaches the app's error handler is Postgres's own violation.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tests.integration.users.probes import count, outbox_types
from users import db

pytestmark = pytest.mark.integration

ADA = {"email": "ada@example.com", "name": "Ada"}


async def execute(admin, *statements: str) -> None:
    async with admin.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def assert_nothing_stored(admin) -> None:
    assert await count(admin, db.users) == 0
    assert await outbox_types(admin) == []


async def test_a_unique_violation_is_409(start_users, admin):
    await execute(admin, "CREATE UNIQUE INDEX users_name_key ON users.users (name)")
    users = await start_users()
    await users.create("first@example.com", name="Ada")

    response = await users.http.post("/api/v1/users", json=ADA)

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "conflicts with stored data"}
    assert await count(admin, db.users) == 1


async def test_a_foreign_key_violation_is_409(start_users, admin):
    await execute(
        admin,
        "CREATE TABLE users.known_names (name text PRIMARY KEY)",
        "ALTER TABLE users.users ADD CONSTRAINT users_name_known"
        " FOREIGN KEY (name) REFERENCES users.known_names (name)",
    )
    users = await start_users()

    response = await users.http.post("/api/v1/users", json=ADA)

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "conflicts with stored data"}
    await assert_nothing_stored(admin)


async def test_a_not_null_violation_is_422(start_users, admin):
    await execute(
        admin,
        "ALTER TABLE users.users ADD COLUMN nickname text NOT NULL DEFAULT ''",
        "ALTER TABLE users.users ALTER COLUMN nickname DROP DEFAULT",
    )
    users = await start_users()

    response = await users.http.post("/api/v1/users", json=ADA)

    assert response.status_code == 422, response.text
    assert response.json() == {"detail": "a value is missing or not allowed"}
    await assert_nothing_stored(admin)


async def test_a_check_violation_is_422(start_users, admin):
    await execute(
        admin, "ALTER TABLE users.users ADD CONSTRAINT users_name_long CHECK (length(name) > 3)"
    )
    users = await start_users()

    response = await users.http.post("/api/v1/users", json=ADA)

    assert response.status_code == 422, response.text
    await assert_nothing_stored(admin)


async def test_a_statement_past_its_timeout_is_503(start_users, admin):
    users = await start_users(db_statement_timeout_ms=300)
    async with admin.connect() as blocker:
        # Held until the request has been answered: every statement on the table waits for it.
        await blocker.execute(sa.text("LOCK TABLE users.users IN ACCESS EXCLUSIVE MODE"))
        read = await asyncio.wait_for(users.http.get("/api/v1/users"), timeout=10)
        write = await asyncio.wait_for(users.http.post("/api/v1/users", json=ADA), timeout=10)
        await blocker.rollback()

    for response in (read, write):
        assert response.status_code == 503, response.text
        assert "retry later" in response.json()["detail"]
    await assert_nothing_stored(admin)
    # Once the lock is gone the same request passes: nothing of the refused one was left behind.
    assert (await users.http.post("/api/v1/users", json=ADA)).status_code == 201


async def test_a_request_that_waits_past_the_pool_timeout_is_503(start_users, admin):
    users = await start_users(db_pool_size=1, db_pool_timeout=0.5)
    async with users.runtime.database.autocommit() as held:
        # The pool's only connection, checked out until the requests have been answered: each
        # waits `db_pool_timeout` for it, far less than the bound here, then gives up.
        await held.execute("SELECT 1")
        read = await asyncio.wait_for(users.http.get("/api/v1/users"), timeout=10)
        write = await asyncio.wait_for(users.http.post("/api/v1/users", json=ADA), timeout=10)

    for response in (read, write):
        assert response.status_code == 503, response.text
        assert "retry later" in response.json()["detail"]
    await assert_nothing_stored(admin)
    # The connection is back in the pool: the same requests pass.
    assert (await users.http.get("/api/v1/users")).status_code == 200
    assert (await users.http.post("/api/v1/users", json=ADA)).status_code == 201
