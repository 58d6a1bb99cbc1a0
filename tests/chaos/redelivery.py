"""The same message delivered twice: copies of real messages put back on their channels.

RabbitMQ messages are copied as they pass (a private queue bound to each exchange); Kafka records
are read back from their topics. Either way the copy is the message itself, byte for byte, with
its headers, as a redelivery after a lost acknowledgement or a producer's retry would bring it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import aio_pika
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from shared.envelope import decode
from switchyard.topology import Flow

KEPT = 10  # recent messages kept, or read back, per channel


@dataclass(frozen=True)
class Copy:
    channel: str
    type: str


class RabbitCopies:
    """The latest messages of each RabbitMQ exchange, kept to be published a second time."""

    def __init__(self, amqp_url: str, prefix: str, flows: list[Flow]) -> None:
        self.amqp_url, self.prefix = amqp_url, prefix
        self.flows = [f for f in flows if f.channel.broker == "rabbit"]
        self.kept: dict[str, deque[aio_pika.abc.AbstractIncomingMessage]] = {}

    async def __aenter__(self) -> RabbitCopies:
        # Robust: the copying queue and its bindings come back after a RabbitMQ restart.
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self.connection.channel()
        for flow in self.flows:
            exchange = self.prefix + flow.channel.name
            kept = self.kept[exchange] = deque(maxlen=KEPT)
            queue = await channel.declare_queue(f"{exchange}.chaos-copies", exclusive=True)
            for type in flow.types:  # routing key = type, on a direct and a topic exchange alike
                await queue.bind(exchange, type)

            async def keep(message, kept=kept) -> None:
                kept.append(message)

            await queue.consume(keep, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def deliver_again(self) -> list[Copy]:
        """Publish every kept message again, exactly as it was, each confirmed by the broker."""
        sent = []
        async with await aio_pika.connect(self.amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            for exchange_name, kept in self.kept.items():
                exchange = await channel.get_exchange(exchange_name, ensure=False)
                for m in list(kept):
                    again = aio_pika.Message(
                        m.body, headers=m.headers, content_type=m.content_type,
                        content_encoding=m.content_encoding, message_id=m.message_id,
                        correlation_id=m.correlation_id, timestamp=m.timestamp, type=m.type,
                        app_id=m.app_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    )  # fmt: skip
                    await exchange.publish(again, routing_key=m.routing_key, mandatory=True)
                    sent.append(Copy(exchange_name, decode(m.body).type))
        return sent


async def kafka_again(bootstrap: str, prefix: str, flows: list[Flow]) -> list[Copy]:
    """Read the latest records of each topic back and produce each again, key and headers too."""
    topics = [prefix + f.channel.name for f in flows if f.channel.broker == "kafka"]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    sent = []
    try:
        for topic in topics:
            # The producer waits for the topic's metadata; a group-less consumer has none yet.
            partitions = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            each = max(1, KEPT // len(partitions))
            for tp in partitions:
                consumer.seek(tp, max(0, ends[tp] - each))
            records = []
            deadline = asyncio.get_running_loop().time() + 30
            while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"could not read {topic} back to its end within 30s")
                batch = await consumer.getmany(timeout_ms=1000)
                records += [r for rs in batch.values() for r in rs if r.offset < ends[_tp(r)]]
            for r in records:
                await producer.send_and_wait(topic, r.value, key=r.key, partition=r.partition,
                                             headers=list(r.headers))  # fmt: skip
                sent.append(Copy(topic, decode(r.value).type))
    finally:
        await producer.stop()
        await consumer.stop()
    return sent


def _tp(record) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def duplicates_skipped(metrics_text: str) -> float:
    """The sum of a service's `switchyard_inbox_duplicates_total` over its channels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "switchyard_inbox_duplicates"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
