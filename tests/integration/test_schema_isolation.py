"""Each service's login role owns its schema and is refused everything on the other two."""

from __future__ import annotations

import itertools

import asyncpg
import pytest

pytestmark = pytest.mark.integration

SCHEMAS = ("users", "orders", "payments")
PAIRS = list(itertools.permutations(SCHEMAS, 2))  # all six (service, another service's schema)
TRESPASSES = {
    "read": "SELECT secret FROM {schema}.probe",
    "write": "INSERT INTO {schema}.probe VALUES ('planted')",
    "create": "CREATE TABLE {schema}.intruder (id int)",
}


@pytest.fixture
async def probes(database) -> None:
    """A table with one row in every schema, owned by that schema's service as its own would be
    (whatever the migrations hold, there is something to read)."""
    admin = await asyncpg.connect(database.admin_url)
    try:
        for schema in SCHEMAS:
            await admin.execute(f"CREATE TABLE {schema}.probe (secret text)")
            await admin.execute(f"INSERT INTO {schema}.probe VALUES ('kept by {schema}')")
            await admin.execute(f"ALTER TABLE {schema}.probe OWNER TO {schema}_service")
    finally:
        await admin.close()


@pytest.mark.parametrize(("service", "other"), PAIRS, ids=[f"{s} on {o}" for s, o in PAIRS])
async def test_a_service_role_is_refused_on_another_services_schema(
    database, probes, service, other
):
    conn = await asyncpg.connect(database.url(service))
    try:
        assert await conn.fetchval("SELECT current_user") == f"{service}_service"
        # Its own schema is its to use...
        assert await conn.fetchval(f"SELECT secret FROM {service}.probe") == f"kept by {service}"
        await conn.execute(f"CREATE TABLE {service}.mine (id int)")
        # ...and the other's is closed to it, whatever it tries.
        for trespass, statement in TRESPASSES.items():
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(statement.format(schema=other))
                pytest.fail(f"{service}_service could {trespass} in schema {other}")
        for privilege in ("USAGE", "CREATE"):
            granted = await conn.fetchval("SELECT has_schema_privilege($1, $2)", other, privilege)
            assert granted is False, privilege
    finally:
        await conn.close()
