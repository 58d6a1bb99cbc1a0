"""What a consumer expects of a message (envelope and transport), and its delivery to the consumer."""

from __future__ import annotations

from typing import Any

from pact import Pact, match

from shared.db import Database
from shared.dispatch import Dispatcher
from shared.envelope import CONTENT_TYPE, Envelope, decode
from shared.runtime import Wiring

# Pact's datetime matcher takes a Java-style pattern with no optional parts, and pydantic leaves
# the fraction out when it is zero: RFC 3339 as a regex accepts every time the producer may send.
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
CURRENCY = r"^[A-Z]{3}$"
EXAMPLE_ID = "0f7b4c1e-93a2-4d55-b1f0-6c2d8e4a9b31"


def cloud_event(type: str, *, source: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """A structured-mode CloudEvents body as `shared.envelope.decode` accepts it.

    Literal only where the consumer needs the exact value: the spec version and data content type
    its envelope model allows, and the type it dispatches on. Everything else is matched by form.
    """
    return {
        "specversion": "1.0",
        "id": match.uuid(EXAMPLE_ID),
        "source": match.str(source),
        "type": type,
        "time": match.regex("2024-05-01T12:00:00.123456Z", regex=RFC3339),
        "subject": match.uuid(subject),
        "datacontenttype": "application/json",
        "data": data,
        "correlationid": match.str("c0ffee00-0000-4000-8000-000000000001"),
    }


def on_kafka(topic: str, key: str) -> dict[str, Any]:
    """Transport of a Kafka record: its topic, and its key (the entity id, so it stays in order)."""
    return {"topic": topic, "key": match.uuid(key)}


def on_rabbit(exchange: str, routing_key: str) -> dict[str, Any]:
    """Transport of a RabbitMQ message: the exchange it is published to, and its routing key."""
    return {"exchange": exchange, "routingKey": routing_key}


def expect(pact: Pact, description: str, body: dict[str, Any], transport: dict[str, Any]) -> None:
    """One asynchronous message interaction: the body, its content type and its transport."""
    (
        pact.upon_receiving(description, "Async")
        .with_body(body, CONTENT_TYPE)
        .with_metadata(transport)
    )


def receive(pact: Pact) -> tuple[Envelope, dict[str, Any]]:
    """The one message the pact holds, decoded as the consumer's transport decodes it."""
    received: list[tuple[str, dict[str, Any]]] = []
    # Collect only: pact does not await coroutines, so the real handler runs after this returns.
    pact.verify(lambda body, metadata: received.append((str(body), metadata)), "Async")
    [(body, metadata)] = received
    return decode(body.encode()), metadata


def subscriber(
    wiring: Wiring, envelope: Envelope, metadata: dict[str, Any], database: Database
) -> Dispatcher:
    """The consumer's own dispatcher for where the message arrives; fails if it listens elsewhere.

    Built as `shared.runtime.Runtime` builds it, from the consumer's real wiring, so a contract
    naming a topic, exchange or routing key the consumer does not read cannot pass.
    """
    assert metadata["contentType"] == CONTENT_TYPE
    if "topic" in metadata:
        assert metadata["key"] == envelope.subject, "record key must be the subject"
        reads = [s for s in wiring.kafka if s.topic == metadata["topic"]]
        assert reads, f"{wiring.service} reads no topic {metadata['topic']!r}"
        consumer, handlers = reads[0].group, reads[0].handlers
    else:
        # Bindings here are exact keys (one per handled type), never patterns.
        reads = [
            s
            for s in wiring.rabbit
            if s.exchange == metadata["exchange"] and metadata["routingKey"] in s.routing_keys
        ]
        assert reads, f"{wiring.service} binds no queue to {metadata['exchange']!r} with that key"
        consumer, handlers = reads[0].queue, reads[0].handlers
    # A type without a handler is acknowledged and ignored: say so rather than miss an effect.
    assert envelope.type in handlers, f"{consumer} has no handler for {envelope.type!r}"
    return Dispatcher(consumer, handlers, database, wiring.inbox)


async def deliver(wiring: Wiring, pact: Pact, database: Database) -> Envelope:
    """Hand the pact's message to the consumer's real dispatcher, as its broker consumer would."""
    envelope, metadata = receive(pact)
    await subscriber(wiring, envelope, metadata, database)(envelope)
    return envelope
