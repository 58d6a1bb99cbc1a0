"""Group commit: the messages a consumer is handed at about the same time share one transaction.

A consumer holds several messages at once (RabbitMQ's prefetch, one record per Kafka
partition), and each used to pay for a transaction of its own: a pooled connection, BEGIN, its
inbox row, COMMIT. Here the first message handed in leads a batch: while it takes a connection
and opens the transaction, the messages handed in after it join, and the batch then writes
every inbox row in one statement and runs each handler in turn on the same connection. Once a
batch has taken its members, the next message leads the next batch, so batches overlap.

Each caller still waits for its own message and gets its own outcome, so the transport acks,
retries and parks per message as before. When anything in a batch fails, the batch rolls back
and every member runs again alone, in a transaction of its own (`InboxGuard.wrap`): the failing
message fails by itself and the others commit. What that asks of a handler:

- its only effects are its statements on `conn` (a rolled-back batch runs it again alone);
- a database error it means to survive is caught inside a savepoint (`conn.transaction()`);
  caught outside one, it leaves the whole batch's transaction unable to commit;
- its locks are held until the batch commits: a batch runs its members in the order of their
  subjects, so two batches lock the same entities in the same order.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from dataclasses import dataclass, field

import structlog

from shared import metrics
from shared.db import Connection, Database
from shared.envelope import Envelope
from shared.handlers import Handler, Receiver
from shared.inbox import InboxGuard

log = structlog.get_logger(__name__)

# Locks taken by a batch's handlers are held until its commit: a bound keeps that short.
BATCH_LIMIT = 16


class _Turn(enum.Enum):
    DONE = enum.auto()  # committed in a batch, or skipped there as a duplicate
    ALONE = enum.auto()  # the batch failed or was cut short: run alone
    LEAD = enum.auto()  # left over past the limit, or next after a cancelled leader


# eq=False: `_leave` must find this very member, not one with an equal envelope.
@dataclass(eq=False)
class _Member:
    envelope: Envelope
    # The caller's context: its consumer span, log fields and delivery, for its own handler.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    turn: asyncio.Future[_Turn] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """`handler(conn, envelope)` behind the inbox, for messages handed in one at a time by
    concurrent callers, committed in batches of up to `limit`."""

    def __init__(
        self, database: Database, guard: InboxGuard, handler: Handler, limit: int = BATCH_LIMIT
    ) -> None:
        self._database = database
        self._guard = guard
        self._handler = handler
        self._alone: Receiver = guard.wrap(handler)
        self._limit = limit
        self._gathering: list[_Member] = []  # handed in, not yet taken; the first leads

    async def __call__(self, envelope: Envelope) -> None:
        member = _Member(envelope)
        leads = not self._gathering
        self._gathering.append(member)
        turn = _Turn.LEAD if leads else await self._wait(member)
        if turn is _Turn.LEAD:
            turn = await self._lead()
        if turn is _Turn.ALONE:
            await self._alone(envelope)

    async def _lead(self) -> _Turn:
        batch: list[_Member] = []
        try:
            async with self._database.transaction() as conn:
                # Everyone handed in while the connection and BEGIN were on their way.
                batch = self._take()
                duplicates = await self._run(conn, batch)
        except Exception:
            if not batch:  # it never began: those gathered behind the leader run alone too
                batch = self._take()
            if len(batch) == 1:
                raise  # alone already: this is its own outcome
            metrics.BATCH_FALLBACKS.labels(self._guard.consumer).inc()
            log.info("batch rolled back; each message runs alone", exc_info=True,
                     consumer=self._guard.consumer, ids=[m.envelope.id for m in batch])  # fmt: skip
            return _Turn.ALONE
        else:
            for member in batch[1:]:
                _tell(member, _Turn.DONE)
            metrics.BATCH_MESSAGES.labels(self._guard.consumer).observe(len(batch))
            for member in duplicates:  # logged as the message's own line, with its own ids
                member.context.run(self._guard.skipped, [member.envelope])
            return _Turn.DONE
        finally:
            if not batch:  # cancelled before it began
                batch = self._take()
            # Whatever ended the batch, nobody in it is left waiting.
            for member in batch[1:]:
                _tell(member, _Turn.ALONE)

    async def _wait(self, member: _Member) -> _Turn:
        try:
            return await member.turn
        except asyncio.CancelledError:
            self._leave(member)
            raise

    def _leave(self, member: _Member) -> None:
        """A caller cancelled before a batch took it (its consumer stops) leaves the line, and
        passes on the lead it held. One already taken is run by its batch all the same."""
        if member not in self._gathering:
            return
        first = self._gathering[0] is member
        self._gathering.remove(member)
        if first and self._gathering:
            _tell(self._gathering[0], _Turn.LEAD)

    def _take(self) -> list[_Member]:
        """The leader's batch, in the order handed in (the leader first); the first member left
        over leads the next batch."""
        batch, self._gathering = self._gathering[: self._limit], self._gathering[self._limit :]
        if self._gathering:
            _tell(self._gathering[0], _Turn.LEAD)
        return batch

    async def _run(self, conn: Connection, batch: list[_Member]) -> list[_Member]:
        """Record every inbox row, then run each new message's handler in its caller's context;
        the members already handled (duplicates)."""
        fresh = await self._guard.record_all(conn, [m.envelope for m in batch])
        duplicates = []
        # In subject order: two batches that touch the same entities lock them in the same order.
        for member in sorted(batch, key=lambda m: m.envelope.subject or ""):
            envelope = member.envelope
            if envelope.id not in fresh:
                duplicates.append(member)
                continue
            fresh.discard(envelope.id)  # the same id twice in one batch runs once
            # A task in the member's own context: what it logs and owes carries its own trace.
            await asyncio.create_task(self._handler(conn, envelope), context=member.context)
        if len(batch) > 1:
            # A handler that caught a database error outside a savepoint left the transaction
            # aborted, and COMMIT would then roll every member back without a word: this
            # statement raises instead, and each member runs alone.
            await conn.execute("SELECT 1")
        return duplicates


def _tell(member: _Member, turn: _Turn) -> None:
    # A caller cancelled meanwhile waits for nothing: its own cancel leaves the line (`_leave`).
    if not member.turn.done():
        member.turn.set_result(turn)
