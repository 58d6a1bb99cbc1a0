"""Cluster mode: three nodes per broker replicate everything, and clients ride through the loss
of any one node (SIGKILLed mid-flow, then started again on its data)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.channels import Channel
from shared.envelope import Envelope
from shared.kafka import KafkaBus
from shared.rabbit import RabbitBus
from shared.retry import RetryPolicy
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.services import SERVICES, service_env
from tests.support.eventually import eventually
from tests.support.services import QUICK_GROUPS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]

RETRY = RetryPolicy((0.1,))
ORDERS = Channel.rabbit("orders", "order.placed")
ORDER_EVENTS = Channel.kafka("orders.events")


def envelope(subject: str = "order-1") -> Envelope:
    return Envelope(id=str(uuid.uuid4()), source="test", type="order.placed",
                    time=datetime.now(UTC), subject=subject, data={},
                    correlationid=str(uuid.uuid4()))  # fmt: skip


def kafka_bus(cluster: Endpoints, names: str) -> KafkaBus:
    replicas, min_insync = cluster.kafka_replication
    return KafkaBus(cluster.kafka_bootstrap, prefix=names, group_timings=QUICK_GROUPS,
                    replication_factor=replicas, min_insync_replicas=min_insync)  # fmt: skip


async def partitions(bootstrap: str, topic: str) -> list[dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return described["partitions"]
    finally:
        await admin.close()


async def published(bus: RabbitBus | KafkaBus, channel: Channel, message: Envelope) -> bool:
    """Publish once; a refusal (the node is going, the connection moving) counts as not yet."""
    await bus.publish(channel, message)
    return True


def test_services_are_given_every_node_and_the_cluster_replication(cluster_stack):
    env = service_env(SERVICES[0], cluster_stack)
    assert env["AMQP_URL"].split(",") == list(cluster_stack.amqp_nodes)
    assert len(cluster_stack.amqp_nodes) == 3
    assert len(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    assert (env["KAFKA_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")


async def test_topics_have_three_replicas_and_need_two_in_sync(cluster_stack, names):
    async with kafka_bus(cluster_stack, names) as bus:
        await bus.ensure_topics({ORDER_EVENTS.name: 3})
    topic = names + ORDER_EVENTS.name

    async def described() -> list[dict]:
        # The controller created the topic; the node that answers may learn of it a moment later.
        return await partitions(cluster_stack.kafka_bootstrap, topic)

    found = await eventually(described, timeout=30, message="the new topic known to the nodes")
    assert len(found) == 3
    assert all(len(p["replicas"]) == 3 for p in found), found

    async def all_in_sync() -> bool:
        # A new partition's followers join its ISR once they have fetched from the leader.
        return all(
            len(p["isr"]) == 3 for p in await partitions(cluster_stack.kafka_bootstrap, topic)
        )

    await eventually(all_in_sync, timeout=30, message="every replica of every partition in sync")
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster_stack.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    (resource,) = response.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    assert configs["min.insync.replicas"] == "2"


async def test_work_retry_and_parking_queues_are_quorum_queues_on_all_three_nodes(
    cluster_stack, cluster_servers, names
):
    async with RabbitBus(cluster_stack.amqp_failover_url, prefix=names) as bus:
        await bus.declare_exchange(ORDERS.name)
        await bus.declare_queue("orders.work", exchange=ORDERS.name,
                                routing_keys=["order.#"], retry=RETRY)  # fmt: skip
    queues = {q["name"]: q for q in cluster_servers.rabbitmq[1].queues()}
    every_node = sorted(r.node for r in cluster_servers.rabbitmq)
    # A retry queue too: a classic one would live on one node, and stop every client
    # reconnecting while that node is down.
    for name in (
        names + "orders.work",
        names + "orders.work.dlq",
        names + "orders.work.retry.100ms",
    ):
        assert queues[name]["type"] == "quorum", queues[name]
        assert sorted(queues[name]["members"]) == every_node, queues[name]


async def test_the_rabbit_bus_publishes_and_consumes_through_the_loss_of_its_node(
    cluster_stack, cluster_servers, names
):
    received: list[str] = []

    async def receive(message: Envelope) -> None:
        received.append(message.id)

    async with RabbitBus(cluster_stack.amqp_failover_url, prefix=names) as bus:
        await bus.declare_exchange(ORDERS.name)
        await bus.declare_queue("orders.work", exchange=ORDERS.name,
                                routing_keys=["order.#"], retry=RETRY)  # fmt: skip
        await bus.consume("orders.work", receive, retry=RETRY)
        before = envelope()
        await bus.publish(ORDERS, before)
        await eventually(lambda: before.id in received, message="delivered before the crash")

        # The bus tries the nodes in order, so it is on node 1: that node dies.
        await asyncio.to_thread(cluster_servers.crash, "rabbitmq", 1)
        during = envelope()
        await eventually(lambda: published(bus, ORDERS, during), timeout=60,
                         message="a confirmed publish through another node")  # fmt: skip
        await eventually(lambda: during.id in received, timeout=60,
                         message="the consumer, moved to another node, gets it")  # fmt: skip

        await asyncio.to_thread(cluster_servers.restart, "rabbitmq", 1)
        after = envelope()
        await bus.publish(ORDERS, after)
        await eventually(lambda: after.id in received, message="delivered after the restart")

    def all_members_online() -> bool:
        (work,) = [
            q for q in cluster_servers.rabbitmq[0].queues() if q["name"] == names + "orders.work"
        ]
        return len(work["online"]) == 3

    await eventually(all_members_online, timeout=60, message="the restarted node back in the queue")
    assert set(received) == {before.id, during.id, after.id}


async def test_kafka_produces_and_a_group_consumes_through_a_broker_crash(
    cluster_stack, cluster_servers, names
):
    handled: list[str] = []

    async def handle(message: Envelope) -> None:
        handled.append(message.id)

    topic = names + ORDER_EVENTS.name
    async with kafka_bus(cluster_stack, names) as bus:
        await bus.ensure_topics({ORDER_EVENTS.name: 3})
        member = await bus.consume([ORDER_EVENTS.name], "orders", handle, retry=RETRY)
        try:
            await member.wait_assigned(timeout=30)
            before = [envelope(f"order-{n}") for n in range(6)]
            for message in before:
                await bus.publish(ORDER_EVENTS, message)  # acks=all: two replicas at least
            await eventually(lambda: {m.id for m in before} <= set(handled), timeout=30)

            # The broker leading partition 0 dies: its partitions get new leaders.
            leader = next(p["leader"] for p in await partitions(bus.bootstrap, topic)
                          if p["partition"] == 0)  # fmt: skip
            await asyncio.to_thread(cluster_servers.crash, "kafka", leader)
            during = [envelope(f"order-{n}") for n in range(6)]
            for message in during:
                await eventually(lambda m=message: published(bus, ORDER_EVENTS, m), timeout=60,
                                 message="an acks=all produce with one broker down")  # fmt: skip
            await eventually(lambda: {m.id for m in during} <= set(handled), timeout=60,
                             message="the group consumes with one broker down")  # fmt: skip

            await asyncio.to_thread(cluster_servers.restart, "kafka", leader)

            async def in_sync_again() -> bool:
                described = await partitions(bus.bootstrap, topic)
                return all(len(p["isr"]) == 3 for p in described)

            await eventually(in_sync_again, timeout=90, message="the broker rejoins every ISR")
        finally:
            await member.stop()
    # Nothing lost; a record may come twice only if its offset was not committed yet.
    assert {m.id for m in before + during} <= set(handled)
