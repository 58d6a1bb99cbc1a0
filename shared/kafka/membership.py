"""Leaving a consumer group at once, even on a broker that numbers generations from 0."""

from __future__ import annotations

from contextlib import suppress

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

log = structlog.get_logger(__name__)


async def close_and_leave(consumer: AIOKafkaConsumer) -> None:
    """Close the consumer and tell the group, so its partitions move without a session timeout."""
    coordinator = consumer._coordinator
    if coordinator is None:
        await consumer.stop()
        return
    # aiokafka sends LeaveGroup only from generation 1 on. Tansu's first generation is 0, so
    # without this a member of it would keep its partitions until its session expired.
    member_id, generation = coordinator.member_id, coordinator.generation
    await coordinator.close()  # stops heartbeats and rejoins first
    if generation == 0 and member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID:
        with suppress(KafkaError):
            await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, member_id))
            log.debug("kafka.left_group", group=coordinator.group_id, generation=generation)
    await consumer.stop()
