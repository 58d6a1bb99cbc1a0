"""The outbox relay: publishes unsent rows and marks them sent once the broker confirmed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
import structlog

from shared import metrics
from shared.channels import Channel
from shared.db import Connection, Database, quoted
from shared.envelope import Envelope
from shared.outbox import notify_channel
from shared.outbox_listener import NotifyListener

log = structlog.get_logger(__name__)

_FIRST_BACKOFF = 0.2
_STOP_GRACE = 30.0
_MEASURE_EVERY = 1.0  # seconds between backlog queries


class Publisher(Protocol):
    """A broker adapter: returns only after the broker confirmed, raises on any failure."""

    async def publish(
        self,
        channel: Channel,
        envelope: Envelope,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None: ...


@dataclass
class _Backoff:
    """A pause that doubles with each consecutive failure and resets on success."""

    cap: float
    failures: int = 0
    until: float = 0.0

    def failed(self) -> float:
        delay = min(self.cap, _FIRST_BACKOFF * 2**self.failures)
        self.failures += 1
        self.until = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0

    def remaining(self) -> float:
        return max(0.0, self.until - time.monotonic())


class Unsent(NamedTuple):
    """An outbox row the relay claimed, as the claim selects it."""

    id: int
    message_id: str
    broker: str
    destination: str
    routing_key: str | None
    key: str | None
    headers: dict[str, str]
    payload: str  # the envelope as JSON text


class OutboxRelay:
    """Publishes one schema's outbox; several relays may share it (rows are claimed SKIP LOCKED).

    One relay keeps the order of a record key's rows on each broker: when a row fails, the later
    rows of its key wait for the next round. A broker whose every publish failed in a round is
    left alone for a growing pause, so an outage costs neither CPU nor a flood of attempts.
    """

    def __init__(
        self,
        database_or_url: Database | str,
        table: sa.Table,
        publishers: Mapping[str, Publisher],
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        max_backoff: float = 10.0,
    ) -> None:
        self._owns_database = isinstance(database_or_url, str)
        self._database = (
            Database(database_or_url, size=2) if self._owns_database else database_or_url
        )
        self._table = table
        self._schema = table.schema or "public"
        self._publishers = dict(publishers)
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._broker_backoff = {broker: _Backoff(max_backoff) for broker in self._publishers}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_measure = 0.0
        # Plain SQL: a round runs for every few messages. The payload comes as JSON text, parsed
        # straight into the envelope.
        t = quoted(table)
        self._claim = (
            f"SELECT {', '.join(Unsent._fields[:-1])}, payload::text AS payload FROM {t} "
            "WHERE sent_at IS NULL AND broker = ANY($1::text[]) "
            "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        )
        self._mark_sent = (
            f"UPDATE {t} SET sent_at = clock_timestamp(), attempts = attempts + 1 "
            "WHERE id = ANY($1::bigint[])"
        )
        self._mark_failed = f"UPDATE {t} SET attempts = attempts + 1, last_error = $2 WHERE id = $1"
        self._backlog = (
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8 "
            f"FROM {t} WHERE sent_at IS NULL"
        )

    async def start(self) -> None:
        """Start listening for NOTIFY and publishing in the background."""
        if self._tasks:
            return
        self._stop.clear()
        if self._owns_database:
            await self._database.open()  # again, after a stop() closed it
        listener = NotifyListener(self._database.url, notify_channel(self._table), self._wake.set)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"outbox-relay:{self._schema}"),
            asyncio.create_task(listener.run(), name=f"outbox-listener:{self._schema}"),
        ]

    async def stop(self) -> None:
        """Finish the batch in flight, then stop; a batch stuck past a grace period is dropped."""
        if self._tasks:
            self._stop.set()
            self._wake.set()
            relay, listener = self._tasks
            listener.cancel()
            # A cancelled batch rolls back: its rows stay unsent and are published again later.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(relay, _STOP_GRACE)
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            self._tasks = []
        if self._owns_database:
            await self._database.close()

    async def run_once(self) -> int:
        """Publish one batch across all brokers, ignoring any pause; returns rows published."""
        _claimed, published = await self._round(list(self._publishers))
        return published

    async def _run(self) -> None:
        loop_backoff = _Backoff(self._max_backoff)
        while not self._stop.is_set():
            self._wake.clear()  # a NOTIFY arriving during the round triggers the next one
            try:
                claimed, _published = await self._round(self._ready_brokers())
            except Exception as exc:
                # Never let the relay die: its rows are still in the table, try again later.
                # The traceback once per streak of failures is enough (a database outage repeats).
                first = loop_backoff.failures == 0
                log.error(
                    "outbox.round_failed", schema=self._schema, error=repr(exc), exc_info=first
                )
                await self._pause(self._stop, loop_backoff.failed())
                continue
            loop_backoff.succeeded()
            if claimed < self._batch_size:
                await self._pause(self._wake, self._idle_timeout())

    async def _round(self, brokers: Sequence[str]) -> tuple[int, int]:
        """Claim a batch, publish it, record the outcome; returns rows claimed and published."""
        async with self._database.transaction() as conn:
            rows: list[Unsent] = []
            if brokers:
                claimed = await conn.fetch(self._claim, list(brokers), self._batch_size)
                rows = [Unsent(*record) for record in claimed]
            groups: defaultdict[tuple[str, object], list[Unsent]] = defaultdict(list)
            for row in rows:
                # A row without a key has no order to keep: it is a group of its own.
                groups[row.broker, row.key or row.id].append(row)
            outcomes = [
                outcome
                for group in await asyncio.gather(*map(self._publish_in_order, groups.values()))
                for outcome in group
            ]
            if outcomes:
                await self._record(conn, outcomes)
            if time.monotonic() >= self._next_measure:  # gauges need no per-round precision
                self._next_measure = time.monotonic() + _MEASURE_EVERY
                await self._measure(conn)
        self._judge_brokers(outcomes)
        return len(rows), sum(error is None for _row, error in outcomes)

    async def _publish_in_order(self, rows: list[Any]) -> list[tuple[Any, str | None]]:
        """Publish one key's rows in id order, stopping at the first failure."""
        outcomes: list[tuple[Any, str | None]] = []
        for row in rows:
            try:
                await self._publishers[row.broker].publish(
                    Channel(row.broker, row.destination, row.routing_key),
                    Envelope.model_validate_json(row.payload),
                    key=row.key,
                    headers=row.headers,
                )
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning(
                    "outbox.publish_failed", schema=self._schema, id=row.message_id, error=error
                )
                outcomes.append((row, error))
                break  # later rows of this key wait, so the key's order holds
            outcomes.append((row, None))
        return outcomes

    async def _record(self, conn: Connection, outcomes: list[tuple[Any, str | None]]) -> None:
        sent = [row.id for row, error in outcomes if error is None]
        failed = [(row.id, error) for row, error in outcomes if error]
        if sent:
            await conn.execute(self._mark_sent, sent)
        if failed:
            await conn.executemany(self._mark_failed, failed)

    async def _measure(self, conn: Connection) -> None:
        backlog, oldest = await conn.fetchrow(self._backlog)
        metrics.OUTBOX_BACKLOG.labels(self._schema).set(backlog)
        metrics.OUTBOX_OLDEST_AGE.labels(self._schema).set(float(oldest or 0))

    def _judge_brokers(self, outcomes: list[tuple[Any, str | None]]) -> None:
        """Pause a broker that failed every publish of the round; a success ends its pause."""
        failed = {row.broker for row, error in outcomes if error}
        succeeded = {row.broker for row, error in outcomes if not error}
        for broker in succeeded:
            self._broker_backoff[broker].succeeded()
        for broker in failed - succeeded:
            delay = self._broker_backoff[broker].failed()
            log.warning("outbox.broker_paused", schema=self._schema, broker=broker, seconds=delay)

    def _ready_brokers(self) -> list[str]:
        return [b for b, backoff in self._broker_backoff.items() if not backoff.remaining()]

    def _idle_timeout(self) -> float:
        paused = [b.remaining() for b in self._broker_backoff.values() if b.remaining()]
        return min([self._poll_interval, *paused])

    @staticmethod
    async def _pause(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
