"""The pieces of an AsyncAPI 3.0 document: messages in their envelope, operations, bindings."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE

Json = dict[str, Any]

# The newest binding versions the AsyncAPI 3.0 schemas know.
KAFKA_BINDING = "0.5.0"
AMQP_BINDING = "0.3.0"
PERSISTENT = 2  # AMQP delivery mode: the bus publishes every message persistent


def message(
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
        "description": join(description, route),
        "contentType": CONTENT_TYPE,
        "correlationId": ref("correlationIds", "correlationid"),
        "payload": envelope(type_, source, subject, data),
        "bindings": binding,
    }


def envelope(type_: str, source: Json, subject: str, data: Json) -> Json:
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


def operation(action: str, channel: str, type_: str, summary: str, bindings: Json) -> Json:
    operation = {
        "action": action,
        "channel": ref("channels", channel),
        "messages": [{"$ref": f"#/channels/{channel}/messages/{type_}"}],
        "summary": summary,
    }
    if bindings:
        operation["bindings"] = bindings
    return operation


def operation_id(action: str, type_: str) -> str:
    words = type_.replace("_", ".").split(".")
    return action + "".join(word.capitalize() for word in words)


def persistent() -> Json:
    # Published persistent, mandatory (unroutable raises) and with a timestamp: see RabbitBus.
    return {"deliveryMode": PERSISTENT, "mandatory": True, "timestamp": True,
            "bindingVersion": AMQP_BINDING}  # fmt: skip


def acked() -> Json:
    # Acknowledged only once handled and committed: a crash redelivers it.
    return {"ack": True, "bindingVersion": AMQP_BINDING}


def group(group: str) -> Json:
    return {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING}


def ref(section: str, name: str) -> Json:
    prefix = "#/components/" if section in ("messages", "correlationIds") else "#/"
    return {"$ref": f"{prefix}{section}/{name}"}


def join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def doc(model: type) -> str:
    return " ".join((model.__doc__ or "").split())


def info(service: str) -> Json:
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
