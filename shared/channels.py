"""Where a message goes: a Kafka topic, or a RabbitMQ exchange with a routing key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Broker = Literal["kafka", "rabbit"]


@dataclass(frozen=True)
class Channel:
    """A logical destination; adapters add the deployment's name prefix when they use it."""

    broker: Broker
    name: str  # Kafka topic or RabbitMQ exchange
    routing_key: str | None = None  # RabbitMQ only

    @classmethod
    def kafka(cls, topic: str) -> Channel:
        return cls("kafka", topic)

    @classmethod
    def rabbit(cls, exchange: str, routing_key: str) -> Channel:
        return cls("rabbit", exchange, routing_key)
