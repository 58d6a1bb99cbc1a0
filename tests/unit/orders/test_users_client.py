"""The users client against a fake users service: answers, retries, and when it gives up."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from orders.domain import UnknownUser, UsersUnavailable
from orders.users_client import UsersClient

pytestmark = pytest.mark.unit

USER = uuid.uuid4()


class FakeUsers:
    """Answers each request with the next planned response (or raises the planned error)."""

    def __init__(self, *plan: int | Callable[[httpx.Request], httpx.Response]) -> None:
        self.plan = list(plan)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]
        if callable(step):
            return step(request)
        return httpx.Response(step, json={"id": str(USER)})


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("too slow", request=request)


def client(fake: FakeUsers, attempts: int = 3) -> UsersClient:
    return UsersClient(
        "http://users.test",
        attempts=attempts,
        backoff=0.001,
        transport=httpx.MockTransport(fake),
    )


async def test_existing_user_is_one_get_with_the_correlation_id():
    fake = FakeUsers(200)
    async with client(fake) as users:
        await users.ensure_exists(USER, correlation_id="corr-9")
    [request] = fake.requests
    assert request.url.path == f"/api/v1/users/{USER}"
    assert request.headers["X-Correlation-ID"] == "corr-9"


async def test_404_is_an_unknown_user_asked_once():
    fake = FakeUsers(404)
    async with client(fake) as users:
        with pytest.raises(UnknownUser):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("failure", [500, 503, refuse], ids=["500", "503", "refused"])
async def test_passing_failures_are_retried(failure):
    fake = FakeUsers(failure, failure, 200)
    async with client(fake) as users:
        await users.ensure_exists(USER)
    assert len(fake.requests) == 3


@pytest.mark.parametrize("failure", [502, refuse], ids=["502", "refused"])
async def test_retries_are_bounded_then_users_is_unavailable(failure):
    fake = FakeUsers(failure)
    async with client(fake, attempts=4) as users:
        with pytest.raises(UsersUnavailable):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 4


@pytest.mark.parametrize("failure", [read_timeout, 400, 401], ids=["read-timeout", "400", "401"])
async def test_other_failures_are_unavailable_at_once(failure):
    fake = FakeUsers(failure)
    async with client(fake) as users:
        with pytest.raises(UsersUnavailable):
            await users.ensure_exists(USER)
    assert len(fake.requests) == 1
