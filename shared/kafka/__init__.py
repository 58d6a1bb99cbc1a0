"""Kafka adapter: acknowledged publishing, topics with dead-letter twins, committing consumers."""

from shared.kafka.bus import KafkaBus
from shared.kafka.config import DEAD_LETTER_SUFFIX, GroupTimings, KafkaRetry
from shared.kafka.consumer import Handler, KafkaConsumer

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "GroupTimings",
    "Handler",
    "KafkaBus",
    "KafkaConsumer",
    "KafkaRetry",
]
