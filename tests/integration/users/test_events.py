"""What users publishes on Kafka `users.events`, and that a failed change publishes nothing."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from shared.db import make_engine
from shared.envelope import CONTENT_TYPE, decode
from tests.integration.users.probes import count, outbox_types
from tests.support.eventually import eventually
from tests.support.kafka_probe import header_map, read_records, record_count
from users import db, handlers

pytestmark = pytest.mark.integration

PARTITIONS = 3


async def all_sent(engine) -> bool:
    return await count(engine, db.outbox, db.outbox.c.sent_at.is_(None)) == 0


async def test_each_change_arrives_on_kafka_keyed_by_user_with_its_envelope(
    users, admin, stack, names
):
    correlation = {"X-Correlation-ID": "lifecycle-1"}
    created = await users.http.post(
        "/api/v1/users",
        json={"email": "events@example.com", "name": "Eve"},
        headers=correlation,
    )
    user_id = created.json()["id"]
    path = f"/api/v1/users/{user_id}"
    await users.http.patch(path, json={"email": "eve@example.com"}, headers=correlation)
    await users.http.delete(path, headers=correlation)

    topic = names + "users.events"
    records = await read_records(stack.kafka_bootstrap, topic, partitions=PARTITIONS, count=3)

    assert {r.key for r in records} == {user_id.encode()}
    assert len({r.partition for r in records}) == 1  # one user's events stay in order
    events = [decode(r.value) for r in records]
    assert [e.type for e in events] == ["user.registered", "user.updated", "user.deleted"]
    assert [e.data for e in events] == [
        {"user_id": user_id, "email": "events@example.com", "name": "Eve"},
        {"user_id": user_id, "email": "eve@example.com", "name": "Eve"},
        {"user_id": user_id},
    ]
    for record, event in zip(records, events, strict=True):
        headers = header_map(record)
        assert headers["content-type"] == CONTENT_TYPE
        assert headers["ce_type"] == event.type
        assert headers["ce_id"] == event.id
        assert event.specversion == "1.0"
        assert event.source == "switchyard/users"
        assert event.subject == user_id
        assert event.datacontenttype == "application/json"
        assert event.correlationid == "lifecycle-1"
        uuid.UUID(event.id)
    assert len({e.id for e in events}) == 3


async def test_requests_that_fail_or_change_nothing_publish_nothing(users, admin, stack, names):
    user = await users.create("quiet@example.com", "Quiet")
    path = f"/api/v1/users/{user['id']}"
    missing = f"/api/v1/users/{uuid.uuid4()}"

    outcomes = [
        (await users.http.post("/api/v1/users", json={"email": "QUIET@example.com", "name": "Q"})),
        (await users.http.post("/api/v1/users", json={"email": "bad", "name": "Q"})),
        (await users.http.patch(path, json={})),
        (await users.http.patch(path, json={"name": "Quiet"})),
        (await users.http.patch(path, json={"name": ""})),
        (await users.http.patch(missing, json={"name": "Nobody"})),
        (await users.http.delete(missing)),
    ]
    assert [r.status_code for r in outcomes] == [409, 422, 200, 200, 422, 404, 404]

    await eventually(lambda: all_sent(admin), message="outbox published")
    topic = names + "users.events"
    assert await record_count(stack.kafka_bootstrap, topic, partitions=PARTITIONS) == 1
    assert await outbox_types(admin) == ["user.registered"]


async def test_rolled_back_transaction_leaves_no_user_and_no_outbox_row(database, admin):
    engine = make_engine(database.url("users"))

    class Abandoned(Exception):
        pass

    try:
        with pytest.raises(Abandoned):
            async with engine.begin() as conn:
                await handlers.register_user(conn, email="gone@example.com", name="Gone")
                # Both writes happened inside the transaction...
                assert await conn.scalar(sa.select(sa.func.count()).select_from(db.users)) == 1
                assert await conn.scalar(sa.select(sa.func.count()).select_from(db.outbox)) == 1
                raise Abandoned
    finally:
        await engine.dispose()

    # ...and neither outlived it.
    assert await count(admin, db.users) == 0
    assert await count(admin, db.outbox) == 0
