"""The users service on a real port, against this test's own database copy and broker names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine
from shared.runtime import Runtime
from tests.support.servers import serving
from tests.support.services import settings_for
from users.app import create_app
from users.settings import UsersSettings


@dataclass
class UsersService:
    """A running users service and a client for its HTTP API."""

    app: FastAPI
    url: str
    http: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    async def create(self, email: str, name: str = "Ada Lovelace") -> dict:
        """POST a user that must be created; its JSON."""
        response = await self.http.post("/api/v1/users", json={"email": email, "name": name})
        assert response.status_code == 201, response.text
        return response.json()


StartUsers = Callable[..., Awaitable[UsersService]]


@pytest.fixture
def users_settings(stack, database, names) -> Callable[..., UsersSettings]:
    """Settings for this test's users service, with overrides."""
    return lambda **overrides: settings_for(
        UsersSettings, "users", stack, database, names, **overrides
    )


@pytest.fixture
async def start_users(users_settings) -> AsyncIterator[StartUsers]:
    """Start users (consumers off unless asked for); every one is stopped after the test."""
    async with AsyncExitStack() as running:

        async def start(*, consume: bool = False, **overrides) -> UsersService:
            app = create_app(users_settings(**overrides), consume=consume)
            url = await running.enter_async_context(serving(app))
            http = await running.enter_async_context(httpx.AsyncClient(base_url=url))
            service = UsersService(app, url, http)
            if consume:
                await service.runtime.wait_assigned()
            return service

        yield start


@pytest.fixture
async def users(start_users: StartUsers) -> UsersService:
    """The users HTTP API (no consumers)."""
    return await start_users()


@pytest.fixture
async def admin(database) -> AsyncIterator[AsyncEngine]:
    """A superuser engine on this test's database, to look at what the service stored."""
    engine = make_engine(database.admin_url, pool_size=2)
    yield engine
    await engine.dispose()
