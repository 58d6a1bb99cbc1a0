"""Waits before consumers start, so that a first start logs no refusals.

On a new cluster or a new topic, Kafka refuses some questions for a moment: a topic its broker
does not know yet (CreateTopics is acknowledged before every broker has the record), a
partition that has not yet learned its leader, a group whose coordinator lives in an offsets
topic the broker is still making or loading. aiokafka retries each, and logs each refusal. The
waits below ask the same questions where "not yet" is quiet. They are bounded and best effort:
past the deadline the consumers start anyway and retry as they always did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, for_code

from shared.kafka.config import admin_client

log = structlog.get_logger(__name__)

SETTLE_WITHIN = 10.0  # seconds; past it, a warning and a start as before
_ASK_AGAIN_AFTER = 0.1  # seconds


async def until_topics_served(
    bootstrap: str, partitions: Mapping[str, int], *, client_id: str, timeout: float = SETTLE_WITHIN
) -> bool:
    """Until every partition of the topics (name: partition count) has a leader that answers;
    whether they all did within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await _until_known(bootstrap, partitions, client_id)
            await _until_led(bootstrap, partitions, client_id)
        return True
    except (TimeoutError, KafkaError) as error:
        log.warning("kafka.topics_not_settled", topics=sorted(partitions), error=repr(error))
        return False


async def until_groups_coordinated(
    bootstrap: str, groups: Collection[str], *, client_id: str, timeout: float = SETTLE_WITHIN
) -> bool:
    """Until the cluster names a coordinator for each group and that coordinator serves it;
    whether it did within `timeout`."""
    try:
        async with asyncio.timeout(timeout), admin_client(bootstrap, client_id) as admin:
            for group in groups:

                async def coordinated(group: str = group) -> bool:
                    node = await admin.find_coordinator(group)  # raises while there is none
                    # Named, a coordinator may still be loading the offsets partition that holds
                    # the group, and refuses a join until it has (the member logs "Marking the
                    # coordinator dead" at each refusal); a description of the group it answers
                    # without an error says it has. One group a request: aiokafka reads a v3
                    # answer with the v2 layout, so a second group would be read out of place.
                    [answer] = await admin.describe_consumer_groups(
                        [group], group_coordinator_id=node
                    )
                    for error_code, *_ in answer.groups:
                        if error_code:
                            raise for_code(error_code)()  # asked again while it is retriable
                    return True

                await _asked_until_answered(coordinated)
        return True
    except (TimeoutError, KafkaError, NotImplementedError) as error:
        # NotImplementedError: a broker that no longer speaks a version aiokafka knows.
        log.warning("kafka.groups_not_coordinated", groups=sorted(groups), error=repr(error))
        return False


async def _until_known(bootstrap: str, partitions: Mapping[str, int], client_id: str) -> None:
    # The admin client's metadata request logs nothing about a topic its broker does not know.
    async with admin_client(bootstrap, client_id) as admin:

        async def known() -> bool:
            described = await admin.describe_topics(list(partitions))
            return len(described) == len(partitions) and all(
                topic["error_code"] == 0
                and len(topic["partitions"]) == partitions[topic["topic"]]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            )

        await _asked_until_answered(known)


async def _until_led(bootstrap: str, partitions: Mapping[str, int], client_id: str) -> None:
    # Named in the metadata, a leader may not have taken its partition up yet; a ListOffsets
    # asked through end_offsets is retried without a log line until it has.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        await reader.start()
        await reader.end_offsets(
            [TopicPartition(topic, p) for topic, count in partitions.items() for p in range(count)]
        )
    finally:
        await reader.stop()


async def _asked_until_answered(ask: Callable[[], Awaitable[bool]]) -> None:
    """Ask until the answer is yes, or an error that another try would not change."""
    while True:
        try:
            if await ask():
                return
        except KafkaError as error:
            if not error.retriable:
                raise
        await asyncio.sleep(_ASK_AGAIN_AFTER)
