"""A consumer group member that commits records only after their handler finished with them."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, suppress

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry.trace import Span

from shared.envelope import Envelope, decode
from shared.errors import DependencyUnavailable, MalformedMessage, PermanentError, PublishError
from shared.handlers import Receiver
from shared.kafka import liveness
from shared.kafka.config import DEAD_LETTER_SUFFIX, GroupTimings, parking_headers
from shared.kafka.producer import RecordProducer
from shared.metrics import (
    HANDLER_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    MESSAGES_RETRIED,
    MESSAGES_UNREAD,
)
from shared.retry import RetryPolicy
from shared.supervision import Progress
from shared.tracing import consuming

log = structlog.get_logger(__name__)

LEAVE_WITHIN = liveness.STOP_WITHIN  # for each step of a client's stop and goodbye to its group


class KafkaConsumer:
    """Hands each record to `receiver` in partition order, retries, dead-letters, then commits.

    Topics and the group are logical names; `prefix` makes them the broker's. Dead letters go
    out through `dead_letters`, the process's one producer.

    `types` are the event types `receiver` reads (None: all). A topic carries more types than
    any one group reads, and a record whose `ce_type` header names another type is committed
    unread: decoding it, and the span and metrics of handling it, cost some 300k instructions
    (about 0.1 ms), only for the receiver to ignore it. The header is trusted to name the
    envelope's type (every producer here sets both from it); a record without it is read.
    """

    broker = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        receiver: Receiver,
        *,
        retry: RetryPolicy,
        dead_letters: RecordProducer,
        client_id: str = "switchyard",
        prefix: str = "",
        timings: GroupTimings = GroupTimings(),
        max_records: int = 100,
        types: Collection[str] | None = None,
    ) -> None:
        self._bootstrap, self._client_id, self._timings = bootstrap, client_id, timings
        self._prefix = prefix
        self._topics = [prefix + t for t in topics]
        self.group = prefix + group
        self._receiver = receiver
        self._retry = retry
        self._dead_letters = dead_letters
        self._max_records = max_records
        self._types = None if types is None else frozenset(t.encode() for t in types)
        self.assigned = asyncio.Event()  # set while this member holds an assignment
        self.partitions: frozenset[TopicPartition] = frozenset()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = asyncio.Lock()  # held while records are in flight; a rebalance waits for it
        self._interrupted = asyncio.Event()  # cuts retry waits short on stop or rebalance
        self._stopping = False
        self._fetching = False
        # For readiness and the supervisor (shared.supervision).
        self.progress = Progress()
        self._unhandled = 0  # records of the batch at hand not yet handled
        self._crash: str | None = None  # why the task ended, when it crashed
        self._restarting: str | None = None  # why the member is being replaced

    async def start(self) -> None:
        """Join the group and start handling records."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group reads what was published before it joined
            **self._timings.consumer_settings(),
        )
        consumer.subscribe(self._topics, listener=_Rebalance(self))
        try:
            await consumer.start()
        except BaseException:
            # A client that failed to start is still open; while the broker is down the
            # supervisor tries again every round, and each try must not leave one behind. Its
            # stop() may not end, even when cancelled (a restart that timed out while start()
            # waited for an assignment its dead coordinator never brings): left as any member
            # leaves, within LEAVE_WITHIN.
            await _leave(consumer)
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"kafka-consumer:{self.group}")

    async def wait_assigned(self, timeout: float = 10.0) -> frozenset[TopicPartition]:
        """Wait until the group gave this member its partitions (possibly none); return them."""
        async with asyncio.timeout(timeout):
            await self.assigned.wait()
        return self.partitions

    @property
    def label(self) -> str:
        """The logical consumer group."""
        return self.group.removeprefix(self._prefix)

    def death(self) -> str | None:
        """Why this member handles no records, or None while it does (or is stopping)."""
        if self._stopping:
            return None
        if self._restarting is not None:
            return self._restarting
        if self._task is None:
            return "not started"
        if not self._task.done():
            # The task may wait inside the client for a task of the client that is over (a
            # commit waits for fresh metadata that a dead metadata task never brings).
            broken = self._consumer and _client_failure(self._consumer)
            return f"its client is broken: {broken!r}" if broken else None
        if self._crash is not None:  # its leaving the group may have ended in a cancellation
            return self._crash
        return "its task was cancelled" if self._task.cancelled() else "its task ended"

    async def waiting(self) -> int:
        """Records of this member's partitions not yet handled: in the batch at hand, or still
        on the broker (each partition's end offset against this member's position)."""
        consumer, partitions = self._consumer, list(self.partitions)
        if consumer is None or not partitions:
            return self._unhandled
        ends = await consumer.end_offsets(partitions)
        behind = 0
        for tp, end in ends.items():
            with suppress(IllegalStateError):  # revoked meanwhile: not this member's any more
                behind += max(0, end - await consumer.position(tp))
        return behind + self._unhandled

    async def restart(self) -> None:
        """Replace a member whose task ended, or is stuck in a broken client: leave the group,
        join it again, wait for the assignment. Until then `death()` says it is restarting."""
        self._restarting = self._restarting or f"restarting: {self.death()}"
        if self._task is not None:
            # A task stuck in a broken client, or left live by a restart that timed out after
            # start(), must not fetch beside the new one, nor record its crash after the reset
            # below. Its records were not committed, so the group hands them out again.
            self._task.cancel()
            await asyncio.wait([self._task], timeout=LEAVE_WITHIN)  # one stuck in aiokafka stays
        if self._consumer is not None:
            await _leave(self._consumer)  # its partitions go to the other members
        self.partitions, self._unhandled, self._crash = frozenset(), 0, None
        self.assigned.clear()
        self._interrupted.clear()
        await self.start()
        await self.assigned.wait()
        self._restarting = None

    @property
    def stopping(self) -> bool:
        """True once stop() was called: no record after the one in flight will be handled."""
        return self._stopping

    async def stop(self) -> None:
        """Finish and commit the record in flight (unless the client is broken), then leave
        the group."""
        if self._consumer is None:
            return
        self._stopping = True
        self._interrupted.set()
        while self._task is not None and not self._task.done():
            # A fetch holds nothing worth waiting for, and a broken client would keep the
            # record in flight for ever (it is not committed: the group hands it out again).
            if self._fetching or _client_failure(self._consumer):
                self._task.cancel()
                await asyncio.wait([self._task], timeout=LEAVE_WITHIN)  # a stuck one stays
                break
            await asyncio.wait([self._task], timeout=1.0)  # the client may break meanwhile
        await _leave(self._consumer)  # its partitions move to the other members
        self._consumer = None

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch and handle batches with `consumer`, the client this task was started with: a
        restart replaces `self._consumer`, and this task must never touch the replacement."""
        try:
            while not self._stopping:
                self._fetching = True
                try:
                    batch = await consumer.getmany(timeout_ms=1000, max_records=self._max_records)
                finally:
                    self._fetching = False
                _check_client(consumer)
                self._unhandled = sum(map(len, batch.values()))
                async with self._busy:
                    async with asyncio.TaskGroup() as partitions:
                        drains = [
                            partitions.create_task(self._drain(consumer, tp, records))
                            for tp, records in batch.items()
                        ]
                    await self._commit(consumer, dict(d.result() for d in drains if d.result()))
                self._unhandled = 0  # records not handled were rewound: waiting on the broker
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception as exc:
            self._crash = f"crashed: {exc!r}"
            # Nothing was committed past the failure, so a restarted member picks it up again.
            log.exception("kafka.consumer_crashed", group=self.group)
            # Leave the group: the partitions go to healthy members now.
            await _leave(consumer)

    async def _drain(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> tuple[TopicPartition, int] | None:
        """Handle one partition's records in order; the offset to commit then (one past the last
        record handled), or None when none was."""
        handled: int | None = None
        for record in records:
            if self._stopping or tp not in self.partitions or not await self._handle(record):
                self._rewind(consumer, tp, record.offset)
                break
            handled = record.offset
            self._unhandled -= 1
            self.progress.advance()
        return None if handled is None else (tp, handled + 1)

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit what a batch handled, every partition in one request.

        Once per batch, not per record nor per partition: the records of a member that dies
        before its commit go to the group again, and the inbox makes their second run change
        nothing.
        """
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            # The partitions moved on: their new owners start at the last commit, and the inbox
            # makes the records handled here harmless to run again.
            log.warning("kafka.commit_lost_to_rebalance", partitions=sorted(map(str, offsets)))

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        """Fetch from `offset` again, so no later commit can pass over a record not handled."""
        with suppress(IllegalStateError):  # not ours any more: its next owner starts there
            consumer.seek(tp, offset)

    async def _handle(self, record: ConsumerRecord) -> bool:
        """Run the receiver with retries (none for a record of a type it does not read); False if
        a stop or rebalance cut the retries short."""
        channel = record.topic.removeprefix(self._prefix)
        if not self._reads(record):
            MESSAGES_UNREAD.labels(broker="kafka", channel=channel).inc()
            return True
        try:
            envelope = decode(record.value or b"")
        except MalformedMessage as exc:
            return await self._dead_letter(record, channel, exc, attempts=1)
        with structlog.contextvars.bound_contextvars(
            correlation_id=envelope.correlationid, message_id=envelope.id
        ):
            attempt, outage = 1, 0
            while True:
                try:
                    with (
                        HANDLER_SECONDS.labels(broker="kafka", channel=channel).time(),
                        self._span(record, channel, envelope, attempt),
                    ):
                        await self._receiver(envelope)
                except PermanentError as exc:
                    return await self._dead_letter(record, channel, exc, attempts=attempt)
                except DependencyUnavailable as exc:
                    outage += 1  # not the record's fault: wait for the server, attempts untouched
                    delay = self._retry.wait(outage)
                    log.warning("kafka.waiting_for_dependency", delay=delay, error=repr(exc))
                    if not await self._backoff(delay):
                        return False
                except Exception as exc:
                    delay = self._retry.delay_after(attempt)
                    if delay is None:
                        return await self._dead_letter(record, channel, exc, attempts=attempt)
                    MESSAGES_RETRIED.labels(broker="kafka", channel=channel).inc()
                    log.warning("kafka.retry", attempt=attempt, delay=delay, error=repr(exc))
                    if not await self._backoff(delay):
                        return False
                    attempt += 1
                else:
                    MESSAGES_CONSUMED.labels(broker="kafka", channel=channel).inc()
                    return True

    def _reads(self, record: ConsumerRecord) -> bool:
        """False for a record whose `ce_type` header names a type the receiver does not read."""
        if self._types is not None:
            for name, value in record.headers:
                if name == "ce_type" and value is not None:  # a null value names no type
                    return value in self._types
        return True

    def _span(
        self, record: ConsumerRecord, channel: str, envelope: Envelope, attempt: int
    ) -> AbstractContextManager[Span]:
        """This attempt's CONSUMER span, in the trace the record's headers carry."""
        return consuming(
            "kafka",
            channel,
            envelope.id,
            envelope.type,
            record.headers,
            **{
                "messaging.consumer.group.name": self.group.removeprefix(self._prefix),
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "switchyard.attempt": attempt,
            },
        )

    async def _backoff(self, delay: float) -> bool:
        """Wait before another attempt; False if a stop or rebalance came first."""
        try:
            async with asyncio.timeout(delay):
                await self._interrupted.wait()
        except TimeoutError:
            return True
        return False

    async def _dead_letter(
        self, record: ConsumerRecord, channel: str, exc: BaseException, *, attempts: int
    ) -> bool:
        """Park the record as it came, with why, in `<topic>.dlt`.

        Until Kafka acknowledged the dead letter, the record is not done: the member waits and
        tries again (one record, however often: the send is named after the record). False if
        a stop or rebalance came first; the record is then fetched again.
        """
        headers = [*record.headers, *parking_headers(record, exc, attempts)]
        record_id = f"dead-letter:{record.topic}:{record.partition}:{record.offset}"
        waits = 0
        while True:
            try:
                await self._dead_letters.send(record.topic + DEAD_LETTER_SUFFIX, record.value,
                                              key=record.key, headers=headers, record_id=record_id)  # fmt: skip
                break
            except PublishError as publish_error:
                waits += 1
                delay = self._retry.wait(waits)
                log.warning("kafka.dead_letter_failed", delay=delay, error=repr(publish_error))
                if not await self._backoff(delay):
                    return False
        MESSAGES_DEAD_LETTERED.labels(broker="kafka", channel=channel).inc()
        log.error(
            "kafka.dead_lettered",
            topic=channel,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=repr(exc),
        )
        return True


async def _leave(consumer: AIOKafkaConsumer) -> None:
    """Stop the client and leave the group, then stop whatever part of it still runs; each step
    within LEAVE_WITHIN, whatever aiokafka does.

    A client whose metadata task died may never finish stop(): its coordinator can wait for
    metadata that no task will bring, and a task of a broken client may not end when cancelled.
    So each step runs as a task of its own that is waited for at most LEAVE_WITHIN and then left
    behind. Stopped without a goodbye, the member is dropped by the group after its session
    timeout. A client whose fetcher or coordinator died re-raises that error from stop(); it is
    known already (the crash).
    """
    liveness.forget_dead_metadata_task(consumer._client)
    await liveness.step_within(consumer.stop, LEAVE_WITHIN)
    await liveness.step_within(lambda: liveness.stop_what_is_left(consumer), LEAVE_WITHIN)


class ClientTaskEnded(Exception):
    """A background task of the aiokafka client stopped; the member would receive nothing more."""


def _client_failure(consumer: AIOKafkaConsumer) -> ClientTaskEnded | None:
    """Why the client will deliver nothing more, if its fetcher or metadata task is over
    (see shared.kafka.liveness)."""
    if over := liveness.ended(liveness.consumer_tasks(consumer)):
        name, error = over
        failure = ClientTaskEnded(f"the Kafka client's {name} task ended: {error!r}")
        failure.__cause__ = error
        return failure
    return None


def _check_client(consumer: AIOKafkaConsumer) -> None:
    """Raise the client's failure, if it has one: the member crashes, and the supervisor
    replaces it with a fresh client."""
    if failure := _client_failure(consumer):
        raise failure


class _Rebalance(ConsumerRebalanceListener):
    """Keeps the member's view of its partitions, and lets in-flight records finish first."""

    def __init__(self, member: KafkaConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        member = self._member
        member.partitions = member.partitions - frozenset(revoked)
        member.assigned.clear()
        member._interrupted.set()
        async with member._busy:  # the record in flight commits before the group moves on
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        member = self._member
        member.partitions = frozenset(assigned)
        if not member._stopping:
            member._interrupted.clear()
        member.assigned.set()
        log.info("kafka.assigned", group=member.group, partitions=sorted(map(str, assigned)))
