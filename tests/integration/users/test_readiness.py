"""Readiness follows the real servers, and the service serves again when they come back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from yarl import URL

from tests.support.eventually import eventually
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy() -> AsyncIterator[type[TcpProxy]]:
    proxies: list[TcpProxy] = []

    async def start(url: str) -> TcpProxy:
        target = URL(url)
        proxies.append(await TcpProxy(target.host, target.port).start())
        return proxies[-1]

    yield start
    for p in proxies:
        await p.stop()


async def readiness(users) -> tuple[int, dict]:
    response = await users.http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def test_database_outage_is_503_and_the_pool_recovers(start_users, users_settings, proxy):
    direct = users_settings().database_url
    database = await proxy(direct)
    users = await start_users(database_url=database.carrying(direct))
    await users.create("before@example.com")

    database.cut()
    status, checks = await readiness(users)
    assert status == 503
    assert checks["database"] != "ok"
    assert checks["rabbitmq"] == checks["kafka"] == "ok"
    during = await users.http.post("/api/v1/users", json={"email": "x@example.com", "name": "X"})
    assert during.status_code == 503
    assert "detail" in during.json()

    database.restore()
    assert (await readiness(users))[0] == 200  # pre-ping replaced the dead pooled connections
    await users.create("after@example.com")


async def test_bad_input_is_still_422_while_the_database_is_down(
    start_users, users_settings, proxy
):
    """A request is validated before it asks for a connection: its caller learns what to fix,
    not that the database is away (and a malformed request holds no connection)."""
    direct = users_settings().database_url
    database = await proxy(direct)
    users = await start_users(database_url=database.carrying(direct))
    await users.create("before@example.com")

    database.cut()
    malformed = [
        ("POST", "/api/v1/users", {"email": "not an email", "name": "X"}),
        ("GET", "/api/v1/users/not-a-uuid", None),
        ("GET", "/api/v1/users?limit=0", None),
        ("PATCH", "/api/v1/users/not-a-uuid", {"name": "X"}),
        ("PATCH", f"/api/v1/users/{uuid.uuid4()}", {"nickname": "X"}),
        ("DELETE", "/api/v1/users/not-a-uuid", None),
    ]
    for method, path, body in malformed:
        response = await users.http.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
    # The database really is out of reach: the same routes with good input are 503.
    assert (await users.http.get(f"/api/v1/users/{uuid.uuid4()}")).status_code == 503
    assert (await users.http.delete(f"/api/v1/users/{uuid.uuid4()}")).status_code == 503


async def test_a_database_with_no_connection_slot_left_is_503_until_one_frees_up(
    users, database, admin
):
    """Postgres refusing a new connection because every slot is taken (53300, here the
    database's own limit) is an outage like any other: a 503, never a 500."""
    await users.create("before@example.com")

    try:
        async with admin.begin() as conn:  # committed before any connection goes
            await conn.execute(sa.text(f'ALTER DATABASE "{database.name}" CONNECTION LIMIT 0'))
        async with admin.begin() as conn:
            # The pooled connections go, so the service has to ask for new ones.
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND usename <> current_user"
                )
            )
        # Several requests: the first may meet a connection terminated under it, the rest meet
        # the refusal itself.
        for _ in range(3):
            during = await users.http.get(f"/api/v1/users/{uuid.uuid4()}")
            assert during.status_code == 503, during.text
        created = await users.http.post(
            "/api/v1/users", json={"email": "during@example.com", "name": "X"}
        )
        assert created.status_code == 503, created.text
        status, checks = await readiness(users)
        assert status == 503
        assert "too many connections" in checks["database"]
    finally:
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'ALTER DATABASE "{database.name}" CONNECTION LIMIT -1'))
    await users.create("after@example.com")


async def test_rabbitmq_outage_is_503_until_it_is_back(start_users, stack, proxy):
    rabbit = await proxy(stack.amqp_url)
    users = await start_users(amqp_url=rabbit.carrying(stack.amqp_url))
    assert (await readiness(users))[0] == 200

    rabbit.cut()
    status, checks = await readiness(users)
    assert status == 503
    assert checks["rabbitmq"] != "ok"
    assert checks["database"] == checks["kafka"] == "ok"

    rabbit.restore()

    async def ready() -> bool:
        return (await readiness(users))[0] == 200

    await eventually(ready, timeout=20, message="ready again after RabbitMQ came back")
