"""A service's message topology, declared once in its `wiring()`: everything else derives from it.

The runtime declares and consumes from it; `make status`, the test helpers, the README's
message-flow table and the AsyncAPI documents read it (see `switchyard.topology`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa

from shared.handlers import Registered
from shared.messages import Produced

ExchangeType = Literal["direct", "topic", "fanout"]


@dataclass(frozen=True)
class RabbitSubscription:
    """A work queue bound to another service's exchange, one binding per message type it handles."""

    queue: str
    exchange: str
    handlers: Mapping[str, Registered]

    @property
    def routing_keys(self) -> tuple[str, ...]:
        return tuple(self.handlers)


@dataclass(frozen=True)
class KafkaSubscription:
    """A consumer group on a topic; event types it has no handler for are skipped."""

    topic: str
    group: str
    handlers: Mapping[str, Registered]


@dataclass(frozen=True)
class Wiring:
    """One service's message flow on one screen: what it owns, produces and consumes."""

    service: str
    outbox: sa.Table
    inbox: sa.Table
    produces: Sequence[type[Produced]] = ()
    # The RabbitMQ exchanges this service owns and alone declares; consumers of other services
    # bind their queues to them.
    exchanges: Mapping[str, ExchangeType] = field(default_factory=dict)
    rabbit: Sequence[RabbitSubscription] = ()
    kafka: Sequence[KafkaSubscription] = ()
    partitions: int = 3  # of every Kafka topic the service creates

    @property
    def topics(self) -> tuple[str, ...]:
        """The Kafka topics it writes or reads; it creates any that is missing (idempotent)."""
        written = [m.CHANNEL.name for m in self.produces if m.CHANNEL.broker == "kafka"]
        return tuple(dict.fromkeys([*written, *(s.topic for s in self.kafka)]))
