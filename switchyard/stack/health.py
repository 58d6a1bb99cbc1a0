"""Asking each server a real question: a query, an AMQP handshake, a Kafka metadata request."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from switchyard.stack.endpoints import Endpoints


async def _postgres(url: str) -> str:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        return (await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


async def _rabbitmq(url: str) -> str:
    connection = await aio_pika.connect(url, timeout=3)
    try:
        version = connection.transport.connection.server_properties.get("version", "?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()


async def kafka_brokers(bootstrap: str) -> str:
    """How many brokers the cluster at `bootstrap` lists in its metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return f"{len(cluster['brokers'])} broker(s)"
    finally:
        await admin.close()


async def check(endpoints: Endpoints) -> list[tuple[str, str, bool, str, float]]:
    """(server, url, healthy, detail, seconds) for each server (each node of a cluster), asked
    in parallel."""
    probes = {"postgres": (endpoints.database_url, _postgres(endpoints.database_url))}
    rabbits = endpoints.amqp_nodes or (endpoints.amqp_url,)
    brokers = endpoints.kafka_bootstrap.split(",")
    for n, url in enumerate(rabbits, 1):
        probes["rabbitmq" if len(rabbits) == 1 else f"rabbitmq-{n}"] = (url, _rabbitmq(url))
    for n, address in enumerate(brokers, 1):
        probes["kafka" if len(brokers) == 1 else f"kafka-{n}"] = (address, kafka_brokers(address))

    async def run(name: str, url: str, probe) -> tuple[str, str, bool, str, float]:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(probe, timeout=5)
            return name, url, True, detail, time.monotonic() - started
        except Exception as exc:
            return name, url, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started

    return await asyncio.gather(*(run(name, url, probe) for name, (url, probe) in probes.items()))
