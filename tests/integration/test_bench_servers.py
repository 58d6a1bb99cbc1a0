"""A benchmark on the servers of a running `make up` keeps off its database."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from bench.common import servers
from bench.messaging import kafka_raw
from switchyard.stack.bootstrap import database_of, service_url

pytestmark = pytest.mark.integration


async def test_a_benchmark_on_running_servers_works_in_a_database_of_its_own(stack, monkeypatch):
    # The session's servers stand in for a `make up`: their URLs in the environment.
    for variable in ("STACK", "TEST_DATABASE_URL", "TEST_AMQP_URL", "TEST_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("AMQP_URL", stack.amqp_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack.kafka_bootstrap)

    with servers() as endpoints:
        assert endpoints.backend == "external"
        database = database_of(endpoints.database_url)
        assert database != database_of(stack.database_url)
        # Migrated for every service, and each service logs in with its own role.
        for service in ("users", "orders", "payments"):
            conn = await asyncpg.connect(service_url(endpoints.database_url, service))
            try:
                assert await conn.fetchval("SELECT current_database()") == database
                assert await conn.fetchval(f"SELECT count(*) FROM {service}.outbox") == 0
            finally:
                await conn.close()

    admin = await asyncpg.connect(stack.database_url)
    try:
        left = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", database)
    finally:
        await admin.close()
    assert left == 0


async def test_the_raw_kafka_rate_makes_its_topic_before_the_first_send(stack, caplog):
    # A producer that finds no topic logs an error while the broker makes one on first use: in
    # a benchmark's output that reads as a fault. The topic exists before the first send.
    rates = await kafka_raw(stack.kafka_bootstrap, stack.kafka_replication, 5)

    assert rates["acked_one_at_a_time_per_s"] > 0 and rates["acked_send_then_flush_per_s"] > 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
