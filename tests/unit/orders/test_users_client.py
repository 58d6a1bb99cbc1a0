"""The users client against a fake users service on loopback: answers, retries, giving up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orders.domain import UnknownUser, UsersUnavailable
from orders.users_client import UsersClient
from switchyard.stack.processes import free_port

pytestmark = pytest.mark.unit

USER = uuid.uuid4()
Step = int | Callable[[web.Request], "asyncio.Future[web.StreamResponse]"]


class FakeUsers:
    """Answers each request with the next planned step; the last step repeats."""

    def __init__(self, *plan: Step) -> None:
        self.plan = list(plan)
        self.requests: list[web.Request] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        step = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]
        if callable(step):
            return await step(request)
        return web.json_response({"id": str(USER)}, status=step)


async def drop(request: web.Request) -> web.StreamResponse:
    request.transport.close()  # the connection ends before any answer
    return web.Response()


async def too_slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(1)
    return web.json_response({})


@pytest.fixture
async def serve() -> AsyncIterator[Callable]:
    servers: list[TestServer] = []

    async def start(fake: FakeUsers, attempts: int = 3) -> UsersClient:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await fake(request)

        app = web.Application()
        app.router.add_get("/api/v1/users/{user_id}", handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return UsersClient(str(server.make_url("")), attempts=attempts, backoff=0.001, timeout=0.3)

    yield start
    for server in servers:
        await server.close()


def nobody_listening(attempts: int) -> UsersClient:
    return UsersClient(f"http://127.0.0.1:{free_port()}", attempts=attempts, backoff=0.001)


async def test_existing_user_is_one_get_with_the_correlation_id(serve):
    fake = FakeUsers(200)
    async with await serve(fake) as users:
        await users.ensure_exists(USER, correlation_id="corr-9")
    [request] = fake.requests
    assert request.path == f"/api/v1/users/{USER}"
    assert request.headers["X-Correlation-ID"] == "corr-9"


async def test_404_is_an_unknown_user_asked_once(serve):
    fake = FakeUsers(404)
    async with await serve(fake) as users:
        with pytest.raises(UnknownUser):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("failure", [500, 503, drop], ids=["500", "503", "dropped"])
async def test_passing_failures_are_retried(serve, failure):
    fake = FakeUsers(failure, failure, 200)
    async with await serve(fake) as users:
        await users.ensure_exists(USER)
    assert len(fake.requests) == 3


async def test_server_errors_are_retried_a_bounded_number_of_times(serve):
    fake = FakeUsers(502)
    async with await serve(fake, attempts=4) as users:
        with pytest.raises(UsersUnavailable):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 4


async def test_a_refused_connection_is_retried_then_users_is_unavailable():
    async with nobody_listening(attempts=2) as users:
        with pytest.raises(UsersUnavailable, match="cannot connect"):
            await users.ensure_exists(USER)


@pytest.mark.parametrize("failure", [too_slow, 400, 401], ids=["read-timeout", "400", "401"])
async def test_other_failures_are_unavailable_at_once(serve, failure):
    fake = FakeUsers(failure)
    async with await serve(fake) as users:
        with pytest.raises(UsersUnavailable):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 1
