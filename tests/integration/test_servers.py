"""Smoke tests: the session fixtures hand over real, working servers."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration


async def test_database_answers_a_query_and_has_the_service_schemas(database):
    conn = await asyncpg.connect(database.admin_url)
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
        schemas = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        assert {"users", "orders", "payments"} <= schemas
    finally:
        await conn.close()


async def test_rabbitmq_confirms_a_publish_and_delivers_it(stack, names):
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"{names}smoke", exclusive=True)
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(b"hello", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
        )
        assert confirmation is not None  # Basic.Ack from the broker
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.body == b"hello"


async def test_kafka_record_is_produced_and_consumed_by_a_group(stack, names):
    topic, group = f"{names}smoke", f"{names}group"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    value = uuid.uuid4().bytes
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=200,
        rebalance_timeout_ms=1000,
        metadata_max_age_ms=5000,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
        await consumer.commit()
        assert record.value == value and record.key == b"k"
    finally:
        await consumer.stop()


async def test_each_service_schema_has_its_own_migration_version_table(database):
    conn = await asyncpg.connect(database.admin_url)
    try:
        rows = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version'"
        )
    finally:
        await conn.close()
    assert sorted(r["table_schema"] for r in rows) == ["orders", "payments", "users"]
