"""Kafka adapter: acknowledged publishing, topics with dead-letter twins, committing consumers."""

from shared.kafka.bus import KafkaBus
from shared.kafka.config import GroupTimings
from shared.kafka.consumer import KafkaConsumer

__all__ = ["GroupTimings", "KafkaBus", "KafkaConsumer"]
