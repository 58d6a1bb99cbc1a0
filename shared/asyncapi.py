"""A service's AsyncAPI 3.0 document, made from its `wiring()` and its payload models alone.

Served at `GET /asyncapi.json` and committed as `contracts/asyncapi/<service>.json` (`make docs`);
a unit test keeps the two equal and the AsyncAPI parser validates the files in the suite.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE
from shared.kafka.config import DEAD_LETTER_SUFFIX
from shared.messages import Produced
from shared.rabbit.topology import parking_queue
from shared.wiring import Wiring

ASYNCAPI_VERSION = "3.0.0"
# The newest binding versions the AsyncAPI 3.0 schemas know.
KAFKA_BINDING = "0.5.0"
AMQP_BINDING = "0.3.0"
PERSISTENT = 2  # AMQP delivery mode: the bus publishes every message persistent
SCHEMAS = "#/components/schemas/"

Json = dict[str, Any]


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
                self._receive(type_, sub.topic, {"kafka": _group(sub.group)})
        for sub in w.rabbit:
            self._queue(sub.queue, sub.exchange, tuple(sub.handlers))
            for type_ in sub.handlers:
                self._receive(type_, sub.queue, {"amqp": _acked()})
        used = {c["servers"][0]["$ref"].rsplit("/", 1)[1] for c in self.channels.values()}
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "id": f"urn:switchyard:{w.service}",
            "info": _info(w.service),
            "defaultContentType": CONTENT_TYPE,
            "servers": {name: server for name, server in SERVERS.items() if name in used},
            "channels": self.channels,
            "operations": self.operations,
            "components": {
                "messages": self.messages,
                "schemas": self.schemas,
                "correlationIds": {"correlationid": CORRELATION},
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
                    "bindingVersion": KAFKA_BINDING,
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
                "amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": AMQP_BINDING}
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
                    "bindingVersion": AMQP_BINDING,
                }
            },
        }  # fmt: skip
        for type_ in types:
            self.channels[exchange]["messages"][type_] = _ref("messages", type_)

    # Operations: send for every produced type, receive for every handled type.
    def _send(self, model: type[Produced]) -> None:
        channel = model.CHANNEL
        self.messages[model.TYPE] = self._produced(model)
        self.channels[channel.name]["messages"][model.TYPE] = _ref("messages", model.TYPE)
        bindings = {"amqp": _persistent()} if channel.broker == "rabbit" else {}
        self.operations[_operation_id("send", model.TYPE)] = _operation(
            "send", channel.name, model.TYPE, f"{self.wiring.service} sends `{model.TYPE}`.",
            bindings,
        )  # fmt: skip

    def _receive(self, type_: str, channel: str, bindings: Json) -> None:
        self.messages.setdefault(type_, self._read(type_, channel))
        self.channels[channel]["messages"][type_] = _ref("messages", type_)
        self.operations[_operation_id("receive", type_)] = _operation(
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
        return _message(
            model.TYPE,
            model.CHANNEL,
            source={"const": model.SOURCE},
            subject=f"the payload's `{model.SUBJECT}`",
            key=key,
            data={"$ref": SCHEMAS + model.__name__},
            description=_join(
                _doc(model), f"Payload model: `{model.__module__}.{model.__name__}`."
            ),
        )

    def _read(self, type_: str, channel: str) -> Json:
        # A consumer keeps its own minimal view of what it reads (a `Reads` model in its
        # messages.py); the producer's document holds the full payload.
        service = self.wiring.service
        broker = "kafka" if channel in self.wiring.topics else "rabbit"
        return _message(
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


def _message(
    type_: str, channel: Channel, *, source: Json, subject: str, key: Json, data: Json,
    description: str,
) -> Json:  # fmt: skip
    if channel.broker == "kafka":
        route = "On Kafka the record key is the subject."
        binding = {
            "kafka": {
                "key": {**key, "description": f"The envelope's subject: {subject}."},
                "bindingVersion": KAFKA_BINDING,
            }
        }
    else:
        route = f"On RabbitMQ the routing key and the AMQP `type` property are `{type_}`."
        binding = {"amqp": {"messageType": type_, "bindingVersion": AMQP_BINDING}}
    return {
        "name": type_,
        "title": type_,
        "summary": f"`{type_}` in a CloudEvents 1.0 envelope (structured JSON mode).",
        "description": _join(description, route),
        "contentType": CONTENT_TYPE,
        "correlationId": _ref("correlationIds", "correlationid"),
        "payload": _envelope(type_, source, subject, data),
        "bindings": binding,
    }


def _envelope(type_: str, source: Json, subject: str, data: Json) -> Json:
    """The CloudEvents structured envelope (`shared.envelope.Envelope`) around one payload."""
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "subject",
                     "datacontenttype", "correlationid", "data"],
        "properties": {
            "specversion": {"const": "1.0", "description": "CloudEvents version."},
            "id": {**text, "description": "Unique per message; consumers apply it once."},
            "source": {**source, "description": "The producing service."},
            "type": {"const": type_, "description": "The message type."},
            "time": {"type": "string", "format": "date-time"},
            "subject": {**text, "description": f"What the message is about: {subject}."},
            "datacontenttype": {"const": "application/json"},
            "correlationid": {**text, "description": "Shared by every message of one flow."},
            "causationid": {**text, "description": "The id of the message (or webhook) that "
                            "caused this one; absent for a first message."},
            "data": data,
        },
    }  # fmt: skip


def _operation(action: str, channel: str, type_: str, summary: str, bindings: Json) -> Json:
    operation = {
        "action": action,
        "channel": _ref("channels", channel),
        "messages": [{"$ref": f"#/channels/{channel}/messages/{type_}"}],
        "summary": summary,
    }
    if bindings:
        operation["bindings"] = bindings
    return operation


def _operation_id(action: str, type_: str) -> str:
    words = type_.replace("_", ".").split(".")
    return action + "".join(word.capitalize() for word in words)


def _persistent() -> Json:
    # Published persistent, mandatory (unroutable raises) and with a timestamp: see RabbitBus.
    return {"deliveryMode": PERSISTENT, "mandatory": True, "timestamp": True,
            "bindingVersion": AMQP_BINDING}  # fmt: skip


def _acked() -> Json:
    # Acknowledged only once handled and committed: a crash redelivers it.
    return {"ack": True, "bindingVersion": AMQP_BINDING}


def _group(group: str) -> Json:
    return {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING}


def _ref(section: str, name: str) -> Json:
    prefix = "#/components/" if section in ("messages", "correlationIds") else "#/"
    return {"$ref": f"{prefix}{section}/{name}"}


def _join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _doc(model: type) -> str:
    return " ".join((model.__doc__ or "").split())


def _info(service: str) -> Json:
    try:
        version = metadata.version("switchyard")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "0.0.0"
    return {
        "title": f"switchyard {service}",
        "version": version,
        "description": (
            f"What {service} sends and receives over Apache Kafka and RabbitMQ. Every message "
            "is a CloudEvents 1.0 envelope in structured JSON mode, delivered at least once and "
            "applied once (outbox and inbox). Generated from the service's wiring(); "
            f"`make docs` writes contracts/asyncapi/{service}.json."
        ),
    }


CORRELATION = {
    "location": "$message.payload#/correlationid",
    "description": "Every message of one flow (one order) carries the first message's id.",
}

# Host names as in compose/docker-compose.yml; a deployment sets KAFKA_BOOTSTRAP_SERVERS and
# AMQP_URL instead.
SERVERS = {
    "kafka": {
        "host": "kafka:9092",
        "protocol": "kafka",
        "description": "Apache Kafka (KAFKA_BOOTSTRAP_SERVERS).",
    },
    "rabbitmq": {
        "host": "rabbitmq:5672",
        "protocol": "amqp",
        "protocolVersion": "0.9.1",
        "description": "RabbitMQ (AMQP_URL).",
    },
}
