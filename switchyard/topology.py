"""The whole system's message topology, read from each service's `wiring()` and nothing else.

`make status`, the test helpers, the README's message-flow table and the AsyncAPI documents
take their queue, exchange, topic and group names from here, so none of them types one again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.channels import Channel
from shared.kafka.config import DEAD_LETTER_SUFFIX
from shared.rabbit import parking_queue
from shared.wiring import Wiring

SERVICES = ("users", "orders", "payments")


def wirings() -> list[Wiring]:
    """Every service's wiring, in a fixed order."""
    from orders.app import wiring as orders
    from payments.app import wiring as payments
    from users.app import wiring as users

    return [users(), orders(), payments()]


@dataclass(frozen=True)
class Reader:
    """One consumer of a channel: the service, its queue or group, and the types it handles."""

    service: str
    name: str  # RabbitMQ work queue or Kafka consumer group
    types: tuple[str, ...]


@dataclass(frozen=True)
class Flow:
    """One channel: who writes which message types on it, and who reads them."""

    channel: Channel  # the routing key is left out: one flow per topic or exchange
    producer: str
    types: tuple[str, ...]
    readers: tuple[Reader, ...]


def flows(all_wirings: Sequence[Wiring]) -> list[Flow]:
    """Every topic and exchange that carries messages, in the order the services declare them."""
    found: dict[Channel, tuple[str, list[str]]] = {}
    for wiring in all_wirings:
        for message in wiring.produces:
            channel = Channel(message.CHANNEL.broker, message.CHANNEL.name)
            found.setdefault(channel, (wiring.service, []))[1].append(message.TYPE)
    result = []
    for channel, (producer, types) in found.items():
        readers = []
        for wiring in all_wirings:
            for sub in wiring.rabbit if channel.broker == "rabbit" else wiring.kafka:
                source = sub.exchange if channel.broker == "rabbit" else sub.topic
                if source == channel.name:
                    name = sub.queue if channel.broker == "rabbit" else sub.group
                    readers.append(Reader(wiring.service, name, tuple(sub.handlers)))
        result.append(Flow(channel, producer, tuple(types), tuple(readers)))
    return result


def work_queues(all_wirings: Sequence[Wiring]) -> list[str]:
    """Every RabbitMQ work queue a service consumes from."""
    return [sub.queue for wiring in all_wirings for sub in wiring.rabbit]


def consumer_groups(all_wirings: Sequence[Wiring]) -> dict[str, tuple[str, ...]]:
    """Kafka topic -> the consumer groups that read it."""
    groups: dict[str, list[str]] = {}
    for wiring in all_wirings:
        for topic in wiring.topics:
            groups.setdefault(topic, [])
        for sub in wiring.kafka:
            groups[sub.topic].append(sub.group)
    return {topic: tuple(names) for topic, names in groups.items()}


def flow_table(all_wirings: Sequence[Wiring]) -> str:
    """The README's message-flow table (a unit test keeps the README equal to it)."""
    partitions = {w.service: w.partitions for w in all_wirings}
    owners = {name: (w.service, kind) for w in all_wirings for name, kind in w.exchanges.items()}
    rows = [
        "| channel | broker | producer | message types | consumers (queue or group: types) "
        "| dead letters |",
        "|---|---|---|---|---|---|",
    ]
    for flow in flows(all_wirings):
        name = flow.channel.name
        if flow.channel.broker == "kafka":
            where = f"`{name}` ({partitions[flow.producer]} partitions, key = subject)"
            broker, parked = "Kafka", [name + DEAD_LETTER_SUFFIX]
        else:
            owner, kind = owners[name]
            where = f"`{name}` ({kind} exchange of {owner}, routing key = type)"
            broker, parked = "RabbitMQ", [parking_queue(r.name) for r in flow.readers]
        readers = "; ".join(
            f"{r.service} (`{r.name}`: {', '.join(f'`{t}`' for t in r.types)})"
            for r in flow.readers
        )
        types = ", ".join(f"`{t}`" for t in flow.types)
        dead = ", ".join(f"`{p}`" for p in parked)
        rows.append(f"| {where} | {broker} | {flow.producer} | {types} | {readers} | {dead} |")
    return "\n".join(rows) + "\n"


START, END = "<!-- message-flow: generated from wiring() -->", "<!-- message-flow end -->"


def with_flow_table(readme: str, table: str) -> str:
    """`readme` with the text between the markers replaced by `table`."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"
