"""What aiokafka does not tell: whether a client's background tasks still run, and how to close
a client one of them died in.

aiokafka fetches, sends, and refreshes the cluster's metadata in tasks of its own. They end when
a write hits a connection the broker just closed under uvloop, which raises RuntimeError where
aiokafka expects OSError (aio-libs/aiokafka#1038), and nothing tells the caller: a consumer's
`getmany` answers "no records" for ever, and whatever needs fresh metadata (a commit that looks
for the group's coordinator again, a send to a partition that moved) waits for ever.

Everything here reads aiokafka's internals (the version is pinned by the lock); the readiness
tests in tests/integration/test_readiness.py fail if they move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient

log = structlog.get_logger(__name__)

STOP_WITHIN = 10.0  # seconds for one step of stopping a client, before it is left behind


def consumer_tasks(consumer: AIOKafkaConsumer) -> dict[str, asyncio.Task | None]:
    """The consumer's fetcher and metadata tasks. (`getmany` checks its coordinator's itself.)"""
    return {"fetcher": consumer._fetcher.error_future, "metadata": consumer._client._sync_task}


def producer_tasks(producer: AIOKafkaProducer) -> dict[str, asyncio.Task | None]:
    """The producer's sender and metadata tasks."""
    return {"sender": producer._sender.sender_task, "metadata": producer.client._sync_task}


def ended(tasks: dict[str, asyncio.Task | None]) -> tuple[str, BaseException | None] | None:
    """The first task that is over, by name, with what it died of (None if cancelled)."""
    for name, task in tasks.items():
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            return name, getattr(error, "__cause__", None) or error  # aiokafka may wrap it
    return None


def forget_dead_metadata_task(client: AIOKafkaClient) -> None:
    """Let `client.close()` close the connections: it re-raises the error its metadata task died
    of before it closes any, and again on every later call."""
    task = client._sync_task
    if task is not None and task.done():
        client._sync_task = None


async def stop_what_is_left(consumer: AIOKafkaConsumer) -> None:
    """Stop each part of a consumer whose stop() was cut short (a stopped part stays stopped).

    A stop() cut short returns at once the next time, and leaves the heartbeats, the fetcher and
    the connections running: the heartbeats would keep the member in its group with partitions
    that nobody fetches.
    """
    coordinator, fetcher, client = consumer._coordinator, consumer._fetcher, consumer._client
    forget_dead_metadata_task(client)
    parts = []
    if coordinator is not None:  # none before start() got that far
        parts += [coordinator._stop_heartbeat_task, coordinator._stop_commit_offsets_refresh_task]
    if fetcher is not None:
        parts.append(fetcher.close)
    parts.append(client.close)
    for stop in parts:
        with suppress(Exception):  # a part's old error; the next part is stopped all the same
            await stop()
    if fetcher is not None:  # fetcher.close() re-raises a dead fetcher's error first
        for fetch in fetcher._pending_tasks:
            fetch.cancel()


async def step_within(step: Callable[[], Awaitable[object]], seconds: float) -> None:
    """Run one step of stopping a client as a task of its own, waited for at most `seconds`,
    then cancelled and left behind (kept until it ends, its error logged).

    A task of a broken client may not end when cancelled, and whatever awaits it directly
    cannot be cancelled either: a restart or a send with a time limit would wait for ever.
    """
    running = asyncio.ensure_future(step())
    _left_behind.add(running)
    running.add_done_callback(_left_behind.discard)
    running.add_done_callback(_log_stop_error)
    done, _ = await asyncio.wait({running}, timeout=seconds)
    if not done:
        running.cancel()
        log.warning("kafka.client_stop_timed_out", after=seconds)


_left_behind: set[asyncio.Future] = set()  # steps of stopping a client, kept until they end


def _log_stop_error(step: asyncio.Future) -> None:
    # Mostly the old error of a task that died; the client is stopped all the same.
    if not step.cancelled() and (error := step.exception()) is not None:
        log.info("kafka.client_stopped_with_error", error=repr(error))
