"""How the document is put together from a wiring: channels, operations, messages, schemas."""

from __future__ import annotations

from shared.asyncapi import parts
from shared.asyncapi.parts import Json
from shared.channels import Channel
from shared.envelope import CONTENT_TYPE
from shared.kafka.config import DEAD_LETTER_SUFFIX
from shared.messages import Produced
from shared.rabbit.topology import parking_queue
from shared.wiring import Wiring

ASYNCAPI_VERSION = "3.0.0"
SCHEMAS = "#/components/schemas/"


def document(wiring: Wiring) -> Json:
    """The AsyncAPI 3.0 document of one service: what it sends and what it receives."""
    return _Builder(wiring).build()


class _Builder:
    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.channels: dict[str, Json] = {}
        self.operations: dict[str, Json] = {}
        self.messages: dict[str, Json] = {}
        self.schemas: dict[str, Json] = {}

    def build(self) -> Json:
        w = self.wiring
        for topic in w.topics:
            self._topic(topic)
        bound = {sub.exchange for sub in w.rabbit}
        produced_to = {m.CHANNEL.name for m in w.produces if m.CHANNEL.broker == "rabbit"}
        for exchange in dict.fromkeys([*w.exchanges, *sorted(produced_to | bound)]):
            self._exchange(exchange)
        for message in w.produces:
            self._send(message)
        for sub in w.kafka:
            for type_ in sub.handlers:
                self._receive(type_, sub.topic, {"kafka": parts.group(sub.group)})
        for sub in w.rabbit:
            self._queue(sub.queue, sub.exchange, tuple(sub.handlers))
            for type_ in sub.handlers:
                self._receive(type_, sub.queue, {"amqp": parts.acked()})
        used = {c["servers"][0]["$ref"].rsplit("/", 1)[1] for c in self.channels.values()}
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "id": f"urn:switchyard:{w.service}",
            "info": parts.info(w.service),
            "defaultContentType": CONTENT_TYPE,
            "servers": {name: server for name, server in parts.SERVERS.items() if name in used},
            "channels": self.channels,
            "operations": self.operations,
            "components": {
                "messages": self.messages,
                "schemas": self.schemas,
                "correlationIds": {"correlationid": parts.CORRELATION},
            },
        }

    # Channels: one per Kafka topic, one per RabbitMQ exchange, one per work queue consumed.
    def _topic(self, topic: str) -> None:
        parked = f"`{topic}{DEAD_LETTER_SUFFIX}`"
        self.channels[topic] = {
            "address": topic,
            "title": topic,
            "description": f"Kafka topic, record key = the envelope's subject (one subject's "
            f"messages stay in order). A consumer parks what keeps failing in {parked}.",
            "servers": [{"$ref": "#/servers/kafka"}],
            "messages": {},
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": self.wiring.partitions,
                    "bindingVersion": parts.KAFKA_BINDING,
                }
            },
        }

    def _exchange(self, name: str) -> None:
        kind = self.wiring.exchanges.get(name)
        exchange: Json = {"name": name, "durable": True, "autoDelete": False, "vhost": "/"}
        if kind:
            exchange["type"] = kind
            owner = f"a {kind} exchange that {self.wiring.service} owns and declares"
        else:
            owner = "an exchange another service owns and declares"
        self.channels[name] = {
            "address": name,
            "title": name,
            "description": f"RabbitMQ: {owner}; the routing key is the message type.",
            "servers": [{"$ref": "#/servers/rabbitmq"}],
            "messages": {},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": exchange,
                    "bindingVersion": parts.AMQP_BINDING,
                }
            },
        }

    def _queue(self, queue: str, exchange: str, types: tuple[str, ...]) -> None:
        keys = ", ".join(f"`{t}`" for t in types)
        self.channels[queue] = {
            "address": queue,
            "title": queue,
            "description": f"RabbitMQ work queue (quorum) of {self.wiring.service}, bound to "
            f"`{exchange}` with routing keys {keys}. What keeps failing is parked in "
            f"`{parking_queue(queue)}`.",
            "servers": [{"$ref": "#/servers/rabbitmq"}],
            "messages": {},
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {"name": queue, "durable": True, "exclusive": False,
                              "autoDelete": False, "vhost": "/"},
                    "bindingVersion": parts.AMQP_BINDING,
                }
            },
        }  # fmt: skip
        for type_ in types:
            self.channels[exchange]["messages"][type_] = parts.ref("messages", type_)

    # Operations: send for every produced type, receive for every handled type.
    def _send(self, model: type[Produced]) -> None:
        channel = model.CHANNEL
        self.messages[model.TYPE] = self._produced(model)
        self.channels[channel.name]["messages"][model.TYPE] = parts.ref("messages", model.TYPE)
        bindings = {"amqp": parts.persistent()} if channel.broker == "rabbit" else {}
        self.operations[parts.operation_id("send", model.TYPE)] = parts.operation(
            "send", channel.name, model.TYPE, f"{self.wiring.service} sends `{model.TYPE}`.",
            bindings,
        )  # fmt: skip

    def _receive(self, type_: str, channel: str, bindings: Json) -> None:
        self.messages.setdefault(type_, self._read(type_, channel))
        self.channels[channel]["messages"][type_] = parts.ref("messages", type_)
        self.operations[parts.operation_id("receive", type_)] = parts.operation(
            "receive", channel, type_, f"{self.wiring.service} handles `{type_}`.", bindings
        )

    # Messages: the CloudEvents envelope, with the payload model as `data`.
    def _produced(self, model: type[Produced]) -> Json:
        data = model.model_json_schema(mode="serialization", ref_template=SCHEMAS + "{model}")
        for name, schema in data.pop("$defs", {}).items():
            self._schema(name, schema)
        self._schema(model.__name__, data)
        subject = data["properties"][model.SUBJECT]
        key = {k: v for k, v in subject.items() if k in ("type", "format")}
        return parts.message(
            model.TYPE,
            model.CHANNEL,
            source={"const": model.SOURCE},
            subject=f"the payload's `{model.SUBJECT}`",
            key=key,
            data={"$ref": SCHEMAS + model.__name__},
            description=parts.join(
                parts.doc(model), f"Payload model: `{model.__module__}.{model.__name__}`."
            ),
        )

    def _read(self, type_: str, channel: str) -> Json:
        # A consumer keeps its own minimal view of what it reads (a `Reads` model in its
        # messages.py); the producer's document holds the full payload.
        service = self.wiring.service
        broker = "kafka" if channel in self.wiring.topics else "rabbit"
        return parts.message(
            type_,
            Channel(broker, channel, type_ if broker == "rabbit" else None),
            source={"type": "string", "minLength": 1},
            subject="the id the producer names",
            key={"type": "string"},
            data={
                "type": "object",
                "description": f"The producer's payload; {service} reads only the fields its own "
                f"model in services/{service}/messages.py names and ignores the rest.",
            },
            description=f"Produced by another service (its AsyncAPI document has the payload); "
            f"{service} reads only what it needs.",
        )

    def _schema(self, name: str, schema: Json) -> None:
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different payload schemas are both named {name}")
