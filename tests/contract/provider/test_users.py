"""Users keeps its pacts: `GET /api/v1/users/{id}` on a real port, and the events it publishes."""

from __future__ import annotations

import uuid

import pytest

from shared.db import Database
from tests.contract.provider.outbox import last_owed
from tests.contract.provider.verification import assert_all_verified, verify
from tests.support.servers import serving
from tests.support.services import settings_for
from users import db, handlers
from users.app import create_app
from users.settings import UsersSettings

pytestmark = pytest.mark.contract


def states(database: Database) -> dict:
    """Provider states, set up as real rows through users' own queries."""

    async def a_user_exists(params: dict) -> None:
        user_id = uuid.UUID(params["id"])
        async with database.transaction() as conn:
            if await db.fetch_user(conn, user_id) is None:
                await db.insert_user(
                    conn, user_id=user_id, email=f"{user_id}@example.com", name="Ada"
                )

    async def no_user_exists(params: dict) -> None:
        user_id = uuid.UUID(params["id"])
        async with database.transaction() as conn:
            if await db.fetch_user(conn, user_id) is not None:
                await db.delete_user(conn, user_id)

    return {"a user exists": a_user_exists, "no user exists": no_user_exists}


def messages(database: Database) -> dict:
    """Each message as users' real handlers leave it in the outbox."""

    async def user_deleted() -> None:
        async with database.transaction() as conn:
            user = await handlers.register_user(
                conn, email=f"{uuid.uuid4().hex}@example.com", name="Grace"
            )
            await handlers.delete_user(conn, user.id)

    return {"a user.deleted event": lambda: last_owed(database, db.outbox, user_deleted)}


async def test_users_keeps_every_pact_it_is_named_in(stack, database, names):
    app = create_app(settings_for(UsersSettings, "users", stack, database, names), consume=False)
    async with serving(app) as url:
        database = app.state.runtime.database
        run = await verify("users", url=url, states=states(database), messages=messages(database))
    assert_all_verified(run)
