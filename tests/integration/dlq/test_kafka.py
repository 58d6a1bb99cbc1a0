"""Kafka's dead letters: parked, listed, replayed to their partition as they were, and removed
by the `switchyard-dlq` group's mark, in order or not."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.channels import Channel
from shared.dead_letters import KafkaDeadLetters
from shared.envelope import Envelope
from shared.errors import PublishError
from tests.integration.dlq.parked import FAST, TOPIC, TRACEPARENT, event, park_in_kafka
from tests.support.kafka_probe import committed, header_map, read_records

pytestmark = pytest.mark.integration


async def test_kafka_dead_letter_is_listed_then_replayed_to_its_partition(kafka, names):
    await kafka.ensure_topics({TOPIC: 1})
    envelope = event("user.deleted")

    async def always_fails(_: Envelope) -> None:
        raise RuntimeError("stats table locked")

    member = await kafka.consume([TOPIC], "orders", always_fails, retry=FAST)
    await member.wait_assigned()
    await kafka.publish(Channel.kafka(TOPIC), envelope, headers={"traceparent": TRACEPARENT})
    await read_records(kafka.bootstrap, names + TOPIC + ".dlt", partitions=1, count=1)
    await member.stop()

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        [parked] = await dead_letters.browse([TOPIC])
        assert (parked.id, parked.attempts) == (envelope.id, 3)
        assert parked.origin == f"{TOPIC}[0]@0"
        assert parked.parked_in == f"{TOPIC}.dlt[0]@0"
        assert parked.reason == "RuntimeError: stats table locked"
        assert parked.age() >= 0
        await dead_letters.replay(parked)
        assert await dead_letters.browse([TOPIC]) == []

    original, replayed = await read_records(kafka.bootstrap, names + TOPIC, partitions=1, count=2)
    assert (replayed.value, replayed.key, replayed.partition) == (
        original.value,
        original.key,
        original.partition,
    )
    assert replayed.headers == original.headers  # content-type, ce_type, ce_id, traceparent
    assert header_map(replayed)["ce_id"] == envelope.id
    # Removed means: the dlq group's mark is past it; the record itself stays in the log.
    dlt = names + TOPIC + ".dlt"
    assert await committed(kafka.bootstrap, names + "switchyard-dlq", dlt, partitions=1) == [1]


async def test_kafka_removal_mark_skips_records_removed_out_of_order(kafka, names):
    await kafka.ensure_topics({TOPIC: 1})
    parked = [event("user.deleted") for _ in range(3)]
    for envelope in parked:
        await park_in_kafka(kafka, names, envelope)

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        letters = await dead_letters.browse([TOPIC])
        assert [d.id for d in letters] == [e.id for e in parked]
        await dead_letters.purge(letters[1])
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [parked[0].id, parked[2].id]
        await dead_letters.purge(letters[0])
    dlt = names + TOPIC + ".dlt"
    assert await committed(kafka.bootstrap, names + "switchyard-dlq", dlt, partitions=1) == [2]
    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [parked[2].id]


async def test_kafka_replay_without_an_ack_leaves_the_record_parked(kafka, names):
    # The topic takes no record this large: the broker refuses the replay.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(names + TOPIC, 1, 1, topic_configs={"max.message.bytes": "64"}),
                NewTopic(names + TOPIC + ".dlt", 1, 1),
            ]
        )
        assert [error for _, error, *_ in response.topic_errors] == [0, 0], response
    finally:
        await admin.close()
    envelope = event("user.deleted")
    await park_in_kafka(kafka, names, envelope)

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names, timeout=2.0) as dead_letters:
        [parked] = await dead_letters.browse([TOPIC])
        with pytest.raises(PublishError):
            await dead_letters.replay(parked)
    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [envelope.id]


async def test_a_browse_leaves_its_reader_asking_the_broker_for_nothing(kafka, names):
    # The age gauge browses every 15 s in every service: a reader that went on fetching its
    # partitions in between would cost the broker two requests a second each, for nothing.
    await kafka.ensure_topics({TOPIC: 1})
    first, second = event("user.deleted"), event("user.deleted")
    for envelope in (first, second):
        await park_in_kafka(kafka, names, envelope)

    async with KafkaDeadLetters(kafka.bootstrap, prefix=names) as dead_letters:
        client = dead_letters._reader._client
        fetches = []
        send = client.send

        async def counted(node_id, request, **kwargs):
            if type(request).__name__.startswith("FetchRequest"):
                fetches.append(request)
            return await send(node_id, request, **kwargs)

        client.send = counted
        letters = await dead_letters.browse([TOPIC])
        assert [d.id for d in letters] == [first.id, second.id]
        read = len(fetches)
        assert read  # the browse itself read the partition
        await asyncio.sleep(1.5)  # three of the fetcher's half-second waits, had it gone on
        assert len(fetches) == read

        # The idle reader still commits a mark, and the next browse reads again.
        await dead_letters.replay(letters[0])
        assert [d.id for d in await dead_letters.browse([TOPIC])] == [second.id]
        assert len(fetches) > read
        await dead_letters.purge(letters[1])
        assert await dead_letters.browse([TOPIC]) == []
