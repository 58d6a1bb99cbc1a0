"""`switchyard dlq list|show|replay|purge`: the dead letters of every queue and topic, acted on.

The queues and topics come from the services' wiring; the servers from the running stack,
or from AMQP_URL, KAFKA_BOOTSTRAP_SERVERS and BROKER_PREFIX as the services read them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from rich.console import Console
from rich.table import Table

from shared.dead_letters import DeadLetter, KafkaDeadLetters, RabbitDeadLetters
from shared.dead_letters.letter import readable_age
from shared.errors import PublishError
from switchyard.topology import consumer_groups, wirings, work_queues

dlq_app = typer.Typer(help="List, show, replay and purge dead letters.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

AmqpUrl = Annotated[str | None, typer.Option(envvar="AMQP_URL", help="Default: the stack's.")]
Kafka = Annotated[
    str | None, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Default: the stack's.")
]
Prefix = Annotated[str, typer.Option(envvar="BROKER_PREFIX", help="The services' name prefix.")]
Queues = Annotated[
    list[str] | None, typer.Option("--queue", help="Only this work queue's dead letters.")
]
Topics = Annotated[
    list[str] | None, typer.Option("--topic", help="Only this topic's dead letters.")
]
Ids = Annotated[list[str] | None, typer.Argument(help="Message ids, as `dlq list` shows them.")]
All = Annotated[bool, typer.Option("--all", help="Every dead letter (after the filters).")]

DONE = {"replay": "replayed", "purge": "purged"}
# A failed replay or purge leaves the message parked (a replay that reached its queue but
# whose removal failed is sent again by the next replay; the consumer's inbox skips it).
BROKER_ERRORS = (
    PublishError,
    AMQPError,
    ChannelInvalidStateError,
    KafkaError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@dataclass
class Scope:
    """Which servers and which of their dead-letter queues and topics a command looks at."""

    amqp_url: str | None
    kafka: str | None
    prefix: str
    queues: list[str]
    topics: list[str]


def scope(
    amqp_url: str | None,
    kafka: str | None,
    prefix: str,
    queues: list[str] | None,
    topics: list[str] | None,
) -> Scope:
    """The servers (the stack's unless given) and the wiring's queues and topics, filtered."""
    if amqp_url is None or kafka is None:
        from switchyard.stack import control
        from switchyard.stack.processes import StackError

        try:
            endpoints = control.current()
        except StackError as exc:
            raise _fail(str(exc)) from None
        # Every node of a cluster, tried in turn: the command works with the first one down.
        amqp_url = amqp_url or endpoints.amqp_failover_url
        kafka = kafka or endpoints.kafka_bootstrap
    every = wirings()
    all_queues, all_topics = work_queues(every), list(consumer_groups(every))
    for given, known in ((queues, all_queues), (topics, all_topics)):
        unknown = set(given or ()) - set(known)
        if unknown:
            raise _fail(f"unknown: {', '.join(sorted(unknown))}; one of {', '.join(known)}")
    if queues or topics:  # a filter on one broker leaves the other out
        all_queues, all_topics = list(queues or ()), list(topics or ())
    return Scope(amqp_url, kafka, prefix, all_queues, all_topics)


Found = list[tuple[RabbitDeadLetters | KafkaDeadLetters, DeadLetter]]
# The browsed letters, and how many more RabbitMQ counted that another reader held.
Action = Callable[[Found, int], Awaitable[int]]


async def _with_letters(where: Scope, action: Action) -> int:
    """Browse both brokers, then run `action` while the browsed messages are still held."""
    async with AsyncExitStack() as held:
        found: Found = []
        elsewhere = 0
        if where.queues:
            rabbit = await held.enter_async_context(
                RabbitDeadLetters(where.amqp_url or "", prefix=where.prefix)
            )
            found += [(rabbit, d) for d in await rabbit.browse(where.queues)]
            elsewhere = sum(rabbit.held.values())
        if where.topics:
            kafka = await held.enter_async_context(
                KafkaDeadLetters(where.kafka or "", prefix=where.prefix)
            )
            found += [(kafka, d) for d in await kafka.browse(where.topics)]
        return await action(found, elsewhere)


def _run(where: Scope, action: Action) -> None:
    code = asyncio.run(_with_letters(where, action))
    if code:
        raise typer.Exit(code)


@dlq_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
    queue: Queues = None,
    topic: Topics = None,
    amqp_url: AmqpUrl = None,
    kafka: Kafka = None,
    prefix: Prefix = "",
) -> None:
    """Every parked message: id, reason, attempts, origin and age."""

    async def show(found: Found, elsewhere: int) -> int:
        letters = [d for _, d in found]
        if elsewhere:
            _held(len(letters), elsewhere, "list")
        if as_json:
            print(json.dumps([d.summary() for d in letters], indent=2))
            return 0
        table = Table(title=f"dead letters: {len(letters)}")
        for column in ("id", "parked in", "origin", "reason", "attempts", "age"):
            table.add_column(column, overflow="fold")
        for d in letters:
            attempts = "" if d.attempts is None else str(d.attempts)
            table.add_row(d.id, d.parked_in, d.origin, d.reason, attempts, readable_age(d.age()))
        out.print(table)
        return 0

    _run(scope(amqp_url, kafka, prefix, queue, topic), show)


@dlq_app.command()
def show(
    message_id: Annotated[str, typer.Argument(help="The id `dlq list` shows.")],
    amqp_url: AmqpUrl = None,
    kafka: Kafka = None,
    prefix: Prefix = "",
) -> None:
    """One dead letter in full: headers and body (each copy, if it was parked twice)."""

    async def print_it(found: Found, elsewhere: int) -> int:
        matches = [d.full() for _, d in found if d.id == message_id]
        if not matches:
            err.print(f"[red]error:[/red] no dead letter with id {message_id}")
            if elsewhere:
                _held(len(found), elsewhere, "show")
            return 1
        print(json.dumps(matches[0] if len(matches) == 1 else matches, indent=2))
        return 0

    _run(scope(amqp_url, kafka, prefix, None, None), print_it)


@dlq_app.command()
def replay(
    ids: Ids = None,
    every: All = False,
    queue: Queues = None,
    topic: Topics = None,
    amqp_url: AmqpUrl = None,
    kafka: Kafka = None,
    prefix: Prefix = "",
) -> None:
    """Send each back to where it came from; remove it only once the broker confirmed."""
    _run(scope(amqp_url, kafka, prefix, queue, topic), _each(ids, every, "replay"))


@dlq_app.command()
def purge(
    ids: Ids = None,
    every: All = False,
    queue: Queues = None,
    topic: Topics = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    amqp_url: AmqpUrl = None,
    kafka: Kafka = None,
    prefix: Prefix = "",
) -> None:
    """Remove dead letters without replaying them."""
    what = "every dead letter" + (" of the chosen queues and topics" if queue or topic else "")
    if not (ids or every):
        raise _fail("name message ids, or --all")
    if not yes:
        typer.confirm(f"Purge {what if every else ', '.join(ids or ())} for good?", abort=True)
    _run(scope(amqp_url, kafka, prefix, queue, topic), _each(ids, every, "purge"))


def _each(ids: list[str] | None, every: bool, verb: str) -> Action:
    """Replay or purge the chosen dead letters one by one; a failure leaves that one parked."""
    if bool(ids) == every:
        raise _fail("name message ids, or --all (not both)")

    async def act(found: Found, elsewhere: int) -> int:
        chosen = [(b, d) for b, d in found if every or d.id in set(ids or ())]
        missing = set(ids or ()) - {d.id for _, d in chosen}
        failed = 0
        for broker, dead in chosen:
            try:
                await getattr(broker, verb)(dead)
            except BROKER_ERRORS as exc:
                failed += 1
                err.print(f"[red]{verb} failed, still parked:[/red] {dead.id}: {exc!r}")
                continue
            out.print(
                f"{DONE[verb]} {dead.id} ({dead.parked_in} -> {dead.origin})", highlight=False
            )
        for message_id in sorted(missing):
            err.print(f"[red]no dead letter with id[/red] {message_id}")
        out.print(f"{DONE[verb]} {len(chosen) - failed} of {len(chosen)}")
        # What another reader holds may be what was asked for: not done, so not a success.
        unseen = elsewhere if every or missing else 0
        if unseen:
            _held(len(found), unseen, verb)
        return 1 if failed or missing or unseen else 0

    return act


def _held(seen: int, elsewhere: int, verb: str) -> None:
    """Messages RabbitMQ counted as parked that another reader had taken, unacked, meanwhile."""
    err.print(
        f"[yellow]{seen + elsewhere} parked, {elsewhere} held by another reader[/yellow] (a "
        f"`switchyard dlq` or `make status` running now): {verb} again",
        highlight=False,
    )


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)
