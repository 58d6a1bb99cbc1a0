"""Kafka producer side: topics, acknowledged publishing, and the consumers that share it."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE, Envelope, encode
from shared.handlers import Receiver
from shared.kafka.config import DEAD_LETTER_SUFFIX, GroupTimings, Headers
from shared.kafka.consumer import KafkaConsumer
from shared.kafka.producer import RecordProducer
from shared.lifecycle import Lifecycle
from shared.metrics import MESSAGES_PUBLISHED
from shared.retry import RetryPolicy
from shared.tracing import publishing

log = structlog.get_logger(__name__)

_ASK_AGAIN_AFTER = 0.1  # seconds between asks, while the broker makes a topic
_TOPIC_TIMEOUT = 30.0  # seconds for a new topic to be known with its leaders


class KafkaBus(Lifecycle):
    """One producer per process; topic and group names get `prefix` so tests never share them."""

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "",
        client_id: str = "switchyard",
        group_timings: GroupTimings = GroupTimings(),
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
        publish_timeout: float = 10.0,  # then PublishError; the outbox tries again later
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.client_id = client_id
        self.group_timings = group_timings
        self._replication_factor = replication_factor
        self._min_insync_replicas = min_insync_replicas
        self.producer = RecordProducer(bootstrap, client_id, publish_timeout)

    def name(self, logical: str) -> str:
        """The broker-side name of a topic or consumer group."""
        return self.prefix + logical

    async def start(self) -> None:
        """Connect the producer."""
        await self.producer.start()

    async def stop(self) -> None:
        """Deliver what is buffered (for at most the publish timeout) and close the producer."""
        await self.producer.stop()

    async def ping(self) -> None:
        """Ask the cluster for its metadata (readiness); raises if no broker answers."""
        await self.producer.client.fetch_all_metadata()

    async def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        """Create each missing topic, and its dead-letter twin, with the given partition count."""
        # A write is acknowledged once min.insync.replicas replicas have it (acks=all).
        configs = {"min.insync.replicas": str(self._min_insync_replicas)}
        wanted = [
            NewTopic(
                self.name(name) + suffix, count, self._replication_factor, topic_configs=configs
            )
            for name, count in partitions.items()
            for suffix in ("", DEAD_LETTER_SUFFIX)
        ]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        await admin.start()
        try:
            response = await admin.create_topics(wanted)
            for topic, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise KafkaError(f"cannot create topic {topic}: error {code} {message}")
            created = {topic for topic, code, *_ in response.topic_errors if code == 0}
            if created:
                await _until_known(admin, created)
        finally:
            await admin.close()
        if created:
            await self._until_led([t for t in wanted if t.name in created])
        log.info("kafka.topics_ensured", topics=[t.name for t in wanted])

    async def until_coordinated(self, groups: Collection[str], timeout: float = 30.0) -> None:
        """Wait until the cluster names a coordinator for each of the logical `groups`.

        On a new cluster the first group to ask makes the broker create its offsets topic; a
        consumer that asks meanwhile is refused, tries again, and aiokafka logs each refusal as
        an error. Asked here, consumers start on a cluster that coordinates them.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        await admin.start()
        try:
            async with asyncio.timeout(timeout):
                for group in groups:
                    while True:
                        try:
                            await admin.find_coordinator(self.name(group))
                            break
                        except KafkaError as error:
                            if not error.retriable:
                                raise
                            await asyncio.sleep(_ASK_AGAIN_AFTER)
        finally:
            await admin.close()

    async def _until_led(self, topics: Sequence[NewTopic]) -> None:
        # Known to the cluster, a new topic's partitions take a moment more to learn their
        # leaders. A consumer that asks one for offsets before then is refused, tries again,
        # and aiokafka logs each refusal as an error; asked here, the refusal is retried
        # quietly, and consumers start on topics that answer.
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        await reader.start()
        try:
            await reader.end_offsets(
                [TopicPartition(t.name, p) for t in topics for p in range(t.num_partitions)]
            )
        finally:
            await reader.stop()

    async def publish(
        self,
        channel: Channel,
        envelope: Envelope,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send one envelope keyed by its subject; returns once all in-sync replicas have it."""
        if channel.broker != "kafka":
            raise ValueError(f"{channel} is not a Kafka channel")
        record_headers: Headers = [
            ("content-type", CONTENT_TYPE.encode()),
            ("ce_type", envelope.type.encode()),
            ("ce_id", envelope.id.encode()),
            *((name, value.encode()) for name, value in (headers or {}).items()),
        ]
        with publishing("kafka", channel.name, envelope.id, envelope.type, headers or {}):
            await self.producer.send(
                self.name(channel.name),
                encode(envelope),
                key=(key or envelope.subject).encode(),
                headers=record_headers,
                record_id=envelope.id,  # sent again after a timeout, it is still one record
            )
        MESSAGES_PUBLISHED.labels(broker="kafka", channel=channel.name).inc()
        log.debug("kafka.published", topic=channel.name, id=envelope.id, type=envelope.type)

    async def consume(
        self,
        topics: Sequence[str],
        group: str,
        receiver: Receiver,
        *,
        retry: RetryPolicy,
        types: Collection[str] | None = None,
    ) -> KafkaConsumer:
        """Join `group` on logical `topics` and start handing records to `receiver`, those of
        `types` only when given (the rest are committed unread); it dead-letters through this
        bus's producer. The caller stops it."""
        consumer = KafkaConsumer(
            self.bootstrap,
            topics,
            group,
            receiver,
            retry=retry,
            dead_letters=self.producer,
            client_id=self.client_id,
            prefix=self.prefix,
            timings=self.group_timings,
            types=types,
        )
        await consumer.start()
        return consumer


async def _until_known(admin: AIOKafkaAdminClient, topics: Collection[str]) -> None:
    """Until the cluster's metadata has every partition of `topics` with a leader: a broker
    learns of a topic a moment after its creation is acknowledged, and aiokafka logs every
    client's question about a topic it does not know yet as an error."""
    async with asyncio.timeout(_TOPIC_TIMEOUT):
        while True:
            described = await admin.describe_topics(list(topics))
            if all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            ):
                return
            await asyncio.sleep(_ASK_AGAIN_AFTER)
