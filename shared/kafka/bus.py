"""Kafka producer side: topics, acknowledged publishing, and the consumers that share it."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import structlog
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE, Envelope, encode
from shared.handlers import Receiver
from shared.kafka.config import DEAD_LETTER_SUFFIX, GroupTimings, Headers, admin_client
from shared.kafka.consumer import KafkaConsumer
from shared.kafka.producer import RecordProducer
from shared.kafka.settle import until_groups_coordinated, until_topics_served
from shared.lifecycle import Lifecycle
from shared.metrics import MESSAGES_PUBLISHED
from shared.retry import RetryPolicy
from shared.tracing import publishing

log = structlog.get_logger(__name__)


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
        async with admin_client(self.bootstrap, self.client_id) as admin:
            response = await admin.create_topics(wanted)
        for topic, code, *message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"cannot create topic {topic}: error {code} {message}")
        # Made by this service or by another one a moment ago: either way, they may not answer yet.
        served = {topic.name: topic.num_partitions for topic in wanted}
        await until_topics_served(self.bootstrap, served, client_id=self.client_id)
        log.info("kafka.topics_ensured", topics=[t.name for t in wanted])

    async def until_coordinated(self, groups: Collection[str]) -> bool:
        """Wait, a bounded while, until each of the logical `groups` has a coordinator that has
        loaded it (on a new cluster, the first group to ask makes the broker create its offsets
        topic, whose partitions are then loaded); consumers started after it join without a
        refusal logged. Whether they did: past the bound the consumers start all the same."""
        names = [self.name(group) for group in groups]
        return await until_groups_coordinated(self.bootstrap, names, client_id=self.client_id)

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
