"""Dead letters as an operator meets them: `switchyard dlq`, `make status`, and the age gauge of
each service's /metrics."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from shared.dead_letters.watch import DeadLetterWatch
from shared.rabbit import parking_queue
from switchyard.cli import app
from switchyard.stack.inspect import kafka_lag, queue_depths
from tests.integration.dlq.parked import (
    QUEUE,
    TOPIC,
    TRACEPARENT,
    delete_queue,
    event,
    park_in_kafka,
    park_in_rabbit,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

GAUGE = "switchyard_dead_letter_oldest_age_seconds"


def test_cli_lists_shows_and_purges(stack, names):
    envelope = event()

    async def park() -> None:
        async with await aio_pika.connect(stack.amqp_url) as connection:
            channel = await connection.channel()
            await channel.declare_queue(parking_queue(names + QUEUE), durable=True)
            await park_in_rabbit(channel, names, envelope)

    asyncio.run(park())
    env = {
        "AMQP_URL": stack.amqp_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "BROKER_PREFIX": names,
    }
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["dlq", "list", "--json", "--queue", QUEUE], env=env)
        assert listed.exit_code == 0, listed.output
        [row] = json.loads(listed.stdout)
        assert (row["id"], row["origin"], row["attempts"]) == (envelope.id, QUEUE, 3)
        assert row["reason"] == "RuntimeError: ledger unavailable"
        assert row["age_seconds"] >= 0

        shown = runner.invoke(app, ["dlq", "show", envelope.id], env=env)
        assert shown.exit_code == 0, shown.output
        full = json.loads(shown.stdout)
        assert full["body"]["id"] == envelope.id
        assert full["headers"]["traceparent"] == TRACEPARENT

        refused = runner.invoke(app, ["dlq", "purge", envelope.id], env=env, input="n\n")
        assert refused.exit_code != 0
        purged = runner.invoke(app, ["dlq", "purge", envelope.id, "--yes"], env=env)
        assert purged.exit_code == 0, purged.output
        listed = runner.invoke(app, ["dlq", "list", "--json", "--queue", QUEUE], env=env)
        assert json.loads(listed.stdout) == []
    finally:
        asyncio.run(delete_queue(stack.amqp_url, parking_queue(names + QUEUE)))


async def test_status_and_gauge_show_the_oldest_dead_letters_age(rabbit, raw, kafka, names):
    await park_in_rabbit(raw, names, event())
    await kafka.ensure_topics({TOPIC: 1})
    await park_in_kafka(kafka, names, event("user.deleted"))

    rabbit_readings = await queue_depths(rabbit._url, prefix=names)
    [dead] = [r for r in rabbit_readings if r.name == parking_queue(names + QUEUE)]
    assert dead.alarm and "1 ready, oldest" in dead.value
    kafka_readings = await kafka_lag(kafka.bootstrap, prefix=names)
    [dlt] = [r for r in kafka_readings if r.name == names + TOPIC + ".dlt"]
    assert dlt.alarm and "1 records, oldest" in dlt.value

    watch = DeadLetterWatch(
        rabbit._url, kafka.bootstrap, prefix=names, queues=[QUEUE], topics=[TOPIC], interval=60
    )
    try:
        await watch.measure()
        await watch.measure()  # a second round on the clients of the first
    finally:
        await watch.stop()
    rabbit_age = REGISTRY.get_sample_value(GAUGE, {"broker": "rabbit", "channel": QUEUE + ".dlq"})
    kafka_age = REGISTRY.get_sample_value(GAUGE, {"broker": "kafka", "channel": TOPIC + ".dlt"})
    assert rabbit_age is not None and rabbit_age > 0
    assert kafka_age is not None and kafka_age > 0


async def test_a_services_metrics_show_the_age_of_what_it_parked(stack, database, names):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.system import running_system

    async with running_system(
        stack, database, names, payments={"dead_letter_watch_interval": 0.2}
    ) as system:

        async def gauge() -> float:
            response = await system.client.http.get(f"{system.client.urls.payments}/metrics")
            return next(
                sample.value
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if sample.name == GAUGE
                and sample.labels == {"broker": "rabbit", "channel": QUEUE + ".dlq"}
            )

        async def nothing_parked() -> bool:  # the registry is the process's: start from 0
            return await gauge() == 0.0

        await eventually(nothing_parked, message="the gauge reading an empty dlq")
        async with await aio_pika.connect(stack.amqp_url) as connection:
            await park_in_rabbit(await connection.channel(), names, event())
        assert await eventually(gauge, message="the payments dead-letter age gauge") > 0
