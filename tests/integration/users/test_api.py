"""The users HTTP API over a real port, against real Postgres and brokers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from shared.api import MAX_PAGE_LIMIT
from tests.integration.users.probes import count, outbox_types
from tests.support.eventually import eventually
from tests.support.metrics import sample
from users import api, db

pytestmark = pytest.mark.integration

PUBLISHED = "switchyard_messages_published_total"


async def test_user_lifecycle_over_http(users):
    created = await users.http.post(
        "/api/v1/users", json={"email": "ada@example.com", "name": "  Ada Lovelace "}
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["location"] == f"/api/v1/users/{user['id']}"
    assert user["email"] == "ada@example.com"
    assert user["name"] == "Ada Lovelace"  # surrounding blanks are not part of a name
    assert user["stats"] == {"orders_paid": 0, "lifetime_spent_cents": 0}
    path = f"/api/v1/users/{user['id']}"

    read = await users.http.get(path)
    assert read.status_code == 200
    assert read.json() == user

    patched = await users.http.patch(path, json={"name": "Ada King"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Ada King"
    assert patched.json()["email"] == "ada@example.com"
    assert patched.json()["updated_at"] > user["updated_at"]
    assert (await users.http.get(path)).json()["name"] == "Ada King"

    deleted = await users.http.delete(path)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await users.http.get(path)).status_code == 404
    assert (await users.http.patch(path, json={"name": "X"})).status_code == 404
    assert (await users.http.delete(path)).status_code == 404


async def test_a_commit_that_fails_is_not_answered_201(users, admin):
    # A deferred trigger fails at COMMIT, after the handler returned: the response must wait
    # for the commit, or the client would hear 201 for a user that was never stored.
    async with admin.begin() as conn:
        for statement in FAIL_AT_COMMIT:
            await conn.execute(sa.text(statement))

    response = await users.http.post(
        "/api/v1/users", json={"email": "late@example.com", "name": "Late"}
    )

    # Not the caller's fault, and nothing a retry would fix: a 500, not a 503.
    assert response.status_code == 500, response.text
    assert response.json() == {"detail": "internal error"}
    assert await count(admin, db.users) == 0
    assert await count(admin, db.outbox) == 0


FAIL_AT_COMMIT = (
    """CREATE FUNCTION users.fail_at_commit() RETURNS trigger LANGUAGE plpgsql
       AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$""",
    """CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON users.users
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION users.fail_at_commit()""",
)


async def test_duplicate_email_in_another_case_is_409(users, admin):
    await users.create("grace@example.com")
    again = await users.http.post(
        "/api/v1/users", json={"email": "GRACE@Example.COM", "name": "Grace"}
    )
    assert again.status_code == 409
    assert "already registered" in again.json()["detail"]
    assert await count(admin, db.users) == 1
    assert await outbox_types(admin) == ["user.registered"]


async def test_ten_concurrent_creates_with_one_email_make_one_user(users, admin):
    async def create(i: int):
        email = "race@example.com" if i % 2 else "RACE@example.com"
        return await users.http.post("/api/v1/users", json={"email": email, "name": f"R{i}"})

    responses = await asyncio.gather(*(create(i) for i in range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    assert await count(admin, db.users) == 1
    assert await outbox_types(admin) == ["user.registered"]


async def test_update_to_a_taken_email_is_409_and_changes_nothing(users, admin):
    await users.create("taken@example.com", "First")
    second = await users.create("second@example.com", "Second")
    path = f"/api/v1/users/{second['id']}"

    clash = await users.http.patch(path, json={"email": "Taken@Example.com", "name": "New"})
    assert clash.status_code == 409
    assert (await users.http.get(path)).json() == second
    assert await outbox_types(admin) == ["user.registered", "user.registered"]

    # The user's own email in other letters is no clash: it is still the same address.
    own = await users.http.patch(path, json={"email": "SECOND@example.com"})
    assert own.status_code == 200, own.text
    assert own.json()["email"] == "SECOND@example.com"


async def test_patch_that_changes_nothing_is_200_and_emits_nothing(users, admin):
    user = await users.create("same@example.com", "Same")
    path = f"/api/v1/users/{user['id']}"

    empty = await users.http.patch(path, json={})
    assert empty.status_code == 200
    assert empty.json() == user
    same = await users.http.patch(path, json={"name": "Same", "email": "same@example.com"})
    assert same.status_code == 200
    assert same.json() == user
    assert await outbox_types(admin) == ["user.registered"]


NAME_201 = "x" * 201
BAD_REQUESTS = [
    # (case, method, path, keyword arguments for httpx, expected error location)
    ("invalid email", "POST", "", {"json": {"email": "nope", "name": "A"}}, ["body", "email"]),
    ("empty name", "POST", "", {"json": {"email": "a@example.com", "name": ""}}, ["body", "name"]),
    ("blank name", "POST", "", {"json": {"email": "a@example.com", "name": " \t "}}, ["body", "name"]),
    ("long name", "POST", "", {"json": {"email": "a@example.com", "name": NAME_201}}, ["body", "name"]),
    ("NUL in name", "POST", "", {"json": {"email": "a@example.com", "name": "a\x00b"}}, ["body", "name"]),
    ("missing name", "POST", "", {"json": {"email": "a@example.com"}}, ["body", "name"]),
    ("unknown field", "POST", "", {"json": {"email": "a@example.com", "name": "A", "admin": True}}, ["body", "admin"]),
    ("name not a string", "POST", "", {"json": {"email": "a@example.com", "name": 5}}, ["body", "name"]),
    ("email not a string", "POST", "", {"json": {"email": ["a@example.com"], "name": "A"}}, ["body", "email"]),
    ("malformed JSON", "POST", "", {"content": b'{"email": ', "headers": {"content-type": "application/json"}}, ["body"]),
    ("not JSON at all", "POST", "", {"content": b"email=a@example.com", "headers": {"content-type": "application/x-www-form-urlencoded"}}, ["body"]),
    ("body not an object", "POST", "", {"json": ["a@example.com", "A"]}, ["body"]),
    ("no body", "POST", "", {}, ["body"]),
    ("null name in patch", "PATCH", f"/{uuid.uuid4()}", {"json": {"name": None}}, ["body", "name"]),
    ("malformed id (GET)", "GET", "/not-a-uuid", {}, ["path", "user_id"]),
    ("malformed id (PATCH)", "PATCH", "/42", {"json": {}}, ["path", "user_id"]),
    ("malformed id (DELETE)", "DELETE", "/42", {}, ["path", "user_id"]),
    ("limit not a number", "GET", "?limit=ten", {}, ["query", "limit"]),
]  # fmt: skip


async def test_bad_input_is_422_with_field_details_and_stores_nothing(users, admin, subtests):
    for case, method, path, kwargs, location in BAD_REQUESTS:
        with subtests.test(case):
            response = await users.http.request(method, "/api/v1/users" + path, **kwargs)
            assert response.status_code == 422, response.text
            errors = response.json()["detail"]
            assert any(e["loc"][: len(location)] == location for e in errors), errors
            assert all(e["msg"] for e in errors)
    assert await count(admin, db.users) == 0
    assert await count(admin, db.outbox) == 0


async def test_pagination_edges(users):
    empty = (await users.http.get("/api/v1/users")).json()
    assert empty == {"items": [], "total": 0, "page": 1, "pages": 0}

    created = [(await users.create(f"p{i}@example.com", f"P{i}"))["id"] for i in range(5)]

    pages = [(await users.http.get(f"/api/v1/users?page={p}&limit=2")).json() for p in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [2, 2, 1]  # the last page holds the rest
    assert {(p["total"], p["pages"]) for p in pages} == {(5, 3)}
    assert [u["id"] for p in pages for u in p["items"]] == created  # oldest first, none twice

    past = (await users.http.get("/api/v1/users?page=4&limit=2")).json()
    assert past == {"items": [], "total": 5, "page": 4, "pages": 3}
    widest = await users.http.get(f"/api/v1/users?limit={MAX_PAGE_LIMIT}")
    assert widest.status_code == 200
    assert len(widest.json()["items"]) == 5

    for query in ("limit=0", f"limit={MAX_PAGE_LIMIT + 1}", "limit=-1", "page=0"):
        response = await users.http.get(f"/api/v1/users?{query}")
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"][0] == "query"


async def test_a_request_that_fails_after_its_writes_leaves_nothing(users, admin, monkeypatch):
    def fail_after_the_handler(row):
        raise RuntimeError("response could not be built")

    monkeypatch.setattr(api.UserOut, "of", staticmethod(fail_after_the_handler))

    response = await users.http.post(
        "/api/v1/users", json={"email": "ghost@example.com", "name": "Ghost"}
    )

    assert response.status_code == 500
    assert await count(admin, db.users) == 0
    assert await count(admin, db.outbox) == 0


async def test_operations_endpoints(users):
    assert (await users.http.get("/healthz")).json() == {"status": "ok"}

    ready = await users.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "rabbitmq": "ok", "kafka": "ok"}

    published = {"broker": "kafka", "channel": "users.events"}
    before = await sample(users.http, PUBLISHED, **published)
    await users.create("metrics@example.com")
    # The relay publishes user.registered, and /metrics counts it: exactly one more.
    await eventually(
        lambda: sample_is(users, PUBLISHED, before + 1, **published), message="counted"
    )

    assert "swagger" in (await users.http.get("/docs")).text.lower()
    spec = (await users.http.get("/openapi.json")).json()
    create = spec["paths"]["/api/v1/users"]["post"]
    assert {"201", "409", "422"} <= set(create["responses"])
    assert set(spec["paths"]["/api/v1/users/{user_id}"]) == {"get", "patch", "delete"}


async def sample_is(users, name: str, expected: float, **labels: str) -> bool:
    return await sample(users.http, name, **labels) == expected


async def test_correlation_id_is_echoed(users):
    response = await users.http.get("/healthz", headers={"X-Correlation-ID": "trace-me"})
    assert response.headers["X-Correlation-ID"] == "trace-me"


async def test_stored_email_keeps_its_case_but_uniqueness_ignores_it(users, admin):
    await users.create("MiXeD@Example.com")
    async with admin.connect() as conn:
        stored = await conn.scalar(sa.select(db.users.c.email))
    assert stored == "MiXeD@example.com"  # the domain is case-insensitive by definition
