"""Kafka's dead letters: read each `<topic>.dlt`, replay a record to its topic, mark it removed.

A Kafka topic is append-only, so "removed" is a mark: the consumer group `switchyard-dlq`
(behind the broker prefix) commits, per `.dlt` partition, the offset below which every record
was replayed or purged, and in the commit's metadata the removed offsets above it. Reading skips
both. A replay is marked only after Kafka acknowledged it (acks=all); one that dies in between
is replayed again next time, and the consumers' inbox skips the second copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from shared import failure_headers as fh
from shared.dead_letters import letter
from shared.dead_letters.letter import DeadLetter
from shared.kafka.config import DEAD_LETTER_SUFFIX, Headers
from shared.kafka.producer import RecordProducer
from shared.lifecycle import Lifecycle

REMOVED_GROUP = "switchyard-dlq"
FETCH_MS = 1000  # one fetch's wait; a partition is read up to the end offset asked for first
EMPTY_FETCHES = 10  # in a row, before a read that cannot reach the end offset gives up


@dataclass(frozen=True)
class RemovalMark:
    """A `.dlt` partition's removed records: every one below `below`, and the offsets `above`."""

    below: int = 0
    above: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, committed: OffsetAndMetadata | None) -> RemovalMark:
        if committed is None or committed.offset < 0:
            return cls()
        above: set[int] = set()
        for part in filter(None, (committed.metadata or "").split(",")):
            first, _, last = part.partition("-")
            above.update(range(int(first), int(last or first) + 1))
        return cls(committed.offset, frozenset(above))

    def removes(self, offset: int) -> bool:
        return offset < self.below or offset in self.above

    def with_removed(self, offset: int) -> RemovalMark:
        below, above = self.below, set(self.above) | {offset}
        while below in above:  # a run from the mark moves the mark itself
            above.discard(below)
            below += 1
        return RemovalMark(below, frozenset(above))

    def metadata(self) -> str:
        """The offsets above the mark as ranges, "5-7,9": the broker keeps 4 KiB by default."""
        ranges: list[list[int]] = []
        for offset in sorted(self.above):
            if ranges and ranges[-1][1] == offset - 1:
                ranges[-1][1] = offset
            else:
                ranges.append([offset, offset])
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


class KafkaDeadLetters(Lifecycle):
    """Reads `.dlt` partitions from the removal mark on; replays with an idempotent producer."""

    def __init__(self, bootstrap: str, *, prefix: str = "", timeout: float = 10.0) -> None:
        self._bootstrap, self._prefix = bootstrap, prefix
        self.group = prefix + REMOVED_GROUP
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id=REMOVED_GROUP, request_timeout_ms=10_000
        )
        # Assigned, never subscribed: it commits the marks as the group, it never joins it.
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=REMOVED_GROUP,
            group_id=self.group,
            enable_auto_commit=False,
        )
        # Started by the first replay: each idempotent producer costs the broker a producer id,
        # and most uses (a listing, the age watch) send nothing.
        self._producer = RecordProducer(bootstrap, REMOVED_GROUP, timeout)
        self._producing = False

    async def start(self) -> None:
        try:
            await self._admin.start()
            await self._reader.start()
        except BaseException:
            await self.stop()  # the one that started is closed, not leaked
            raise

    async def stop(self) -> None:
        """Close every client, each even if closing another raised."""
        async with AsyncExitStack() as closing:
            closing.push_async_callback(self._admin.close)
            closing.push_async_callback(self._reader.stop)
            closing.push_async_callback(self._producer.stop)  # runs first; nothing if unstarted
        self._producing = False

    async def browse(self, topics: Sequence[str], *, limit: int | None = None) -> list[DeadLetter]:
        """The records parked for each topic and not removed (at most `limit` per partition)."""
        names = [self._prefix + topic + DEAD_LETTER_SUFFIX for topic in topics]
        described = await self._admin.describe_topics(names)
        tps = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            if topic["error_code"] == 0
            for p in sorted(topic["partitions"], key=lambda p: p["partition"])
        ]
        if not tps:
            return []
        marks = await self._marks(tps)
        self._reader.assign(tps)
        try:
            return await self._read(tps, marks, limit)
        finally:
            # An assigned partition is fetched in the background, a request every half second
            # or so, until the next browse: paused, it stays assigned (a replay or purge of what
            # this browse found commits its mark through it, until a browse of other topics)
            # and costs the broker nothing.
            self._reader.pause(*tps)

    async def _read(
        self,
        tps: list[TopicPartition],
        marks: dict[TopicPartition, RemovalMark],
        limit: int | None,
    ) -> list[DeadLetter]:
        starts = await self._reader.beginning_offsets(tps)
        ends = await self._reader.end_offsets(tps)
        found: list[DeadLetter] = []
        for tp in tps:
            mark = marks[tp]
            taken = 0
            start = max(mark.below, starts[tp])
            if start >= ends[tp]:
                continue
            self._reader.seek(tp, start)
            empty = 0  # fetches that brought nothing: the records below the end are gone
            while await self._reader.position(tp) < ends[tp] and (limit is None or taken < limit):
                batch = await self._reader.getmany(tp, timeout_ms=FETCH_MS)
                empty = 0 if batch else empty + 1
                if empty >= EMPTY_FETCHES:
                    raise TimeoutError(
                        f"{tp.topic}[{tp.partition}] gave no records up to {ends[tp]}"
                    )
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp] or (limit is not None and taken >= limit):
                        break
                    if not mark.removes(record.offset):
                        found.append(self._letter(record))
                        taken += 1
        return found

    async def replay(self, dead: DeadLetter) -> None:
        """Send it to its topic and partition as it was; mark it removed once Kafka has it."""
        record: ConsumerRecord = dead.handle
        headers = dict(record.headers)
        partition = headers.get(fh.ORIGINAL_PARTITION)
        dropped = letter.FAILURE_HEADERS | letter.KAFKA_ORIGIN_HEADERS
        kept: Headers = [(name, value) for name, value in record.headers if name not in dropped]
        if not self._producing:
            await self._producer.start()
            self._producing = True
        await self._producer.send(
            record.topic.removesuffix(DEAD_LETTER_SUFFIX),
            record.value,
            key=record.key,
            headers=kept,
            partition=int(partition) if partition is not None else None,
            record_id=f"replay:{record.topic}:{record.partition}:{record.offset}",
        )
        await self._remove(record)

    async def purge(self, dead: DeadLetter) -> None:
        """Mark it removed without sending it anywhere."""
        await self._remove(dead.handle)

    async def _remove(self, record: ConsumerRecord) -> None:
        tp = TopicPartition(record.topic, record.partition)
        mark = (await self._marks([tp]))[tp].with_removed(record.offset)
        await self._reader.commit({tp: OffsetAndMetadata(mark.below, mark.metadata())})

    async def _marks(self, tps: list[TopicPartition]) -> dict[TopicPartition, RemovalMark]:
        # A broker's first group question makes it create its offsets topic: "not available
        # yet" for a moment, as after a coordinator moved.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, KafkaError) and e.retriable),
            wait=wait_exponential(0.1, max=1),
            stop=stop_after_delay(15),
            reraise=True,
        ):
            with attempt:
                committed = await self._admin.list_consumer_group_offsets(
                    self.group, partitions=tps
                )
        return {tp: RemovalMark.parse(committed.get(tp)) for tp in tps}

    def _letter(self, record: ConsumerRecord) -> DeadLetter:
        headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
        dlt = record.topic.removeprefix(self._prefix)
        topic = dlt.removesuffix(DEAD_LETTER_SUFFIX)
        where = (
            f"[{headers.get(fh.ORIGINAL_PARTITION, '?')}]@{headers.get(fh.ORIGINAL_OFFSET, '?')}"
        )
        written = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        return DeadLetter(
            id=letter.message_id(headers.get("ce_id"), record.value or b""),
            broker="kafka",
            parked_in=f"{dlt}[{record.partition}]@{record.offset}",
            origin=topic + where,
            reason=letter.reason(headers),
            attempts=letter.attempts(headers),
            parked_at=letter.parked_at(headers, written),
            headers=headers,
            body=record.value or b"",
            key=record.key,
            handle=record,
        )
