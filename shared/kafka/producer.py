"""The one idempotent producer of a process: acknowledged sends that an outage cannot multiply."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from shared.errors import PublishError
from shared.kafka import liveness
from shared.kafka.config import Headers

log = structlog.get_logger(__name__)

MAX_REMEMBERED = 10_000  # sends remembered by record id (see RecordProducer.send)


class RecordProducer:
    """Sends records with acks=all and waits, each at most `timeout` seconds.

    A send that timed out is still in the producer's buffer, and the producer delivers it once
    the broker is back (the idempotent producer retries until then). So a later send with the
    same `record_id` waits for that one instead of making a second copy.
    """

    def __init__(self, bootstrap: str, client_id: str, timeout: float) -> None:
        self._bootstrap, self._client_id, self._timeout = bootstrap, client_id, timeout
        self._producer: AIOKafkaProducer | None = None
        self._sending: dict[tuple[str, str], asyncio.Future] = {}  # (topic, record id) -> send
        self._renewing = asyncio.Lock()

    @property
    def client(self):
        if self._producer is None:
            raise ConnectionError("the Kafka producer is not started")
        return self._producer.client

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            # Every in-sync replica has a record before it counts as sent, and a retried send
            # is written once (the broker drops the duplicate by its sequence number).
            acks="all",
            enable_idempotence=True,
        )
        try:
            await producer.start()
        except BaseException:
            # Releases the half-open client; its stop() may not end, even when cancelled (a
            # send's time limit ran out while start() waited for metadata that never comes).
            await liveness.step_within(producer.stop, liveness.STOP_WITHIN)
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Deliver what is buffered, or give it up after the timeout (the outbox still has it)."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        await _close(producer, self._timeout)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers,
        record_id: str | None = None,
        partition: int | None = None,  # None: the key's partition
    ) -> None:
        """Send one record and wait until every in-sync replica has it; PublishError if not."""
        name = (topic, record_id) if record_id else None
        try:
            async with asyncio.timeout(self._timeout):
                sending = self._sending.get(name) if name else None
                if sending is None or _failed(sending):
                    producer = await self._live()
                    sending = await producer.send(
                        topic, value, key=key, headers=headers, partition=partition
                    )
                    if name:
                        self._remember(name, sending)
                await asyncio.shield(sending)  # a timeout here leaves the send to go on
        except (KafkaError, TimeoutError) as exc:
            raise PublishError(f"Kafka did not acknowledge a record for {topic}: {exc!r}") from exc
        if name and self._sending.get(name) is sending:
            del self._sending[name]

    async def _live(self) -> AIOKafkaProducer:
        """The producer, made anew if it stopped for good (see shared.kafka.liveness).

        aiokafka ends a producer's sender on an out-of-order sequence (a batch it gave up on
        while the broker was away leaves a gap), and every later send would fail; its metadata
        task ends on uvloop's RuntimeError, and every send that needs fresh metadata would
        wait for ever. A new producer gets a new producer id and starts its sequences again.
        """
        async with self._renewing:
            old = self._producer
            if old is None:
                raise ConnectionError("the Kafka producer is not started")
            over = liveness.ended(liveness.producer_tasks(old))
            if over is None:
                return old
            log.warning("kafka.producer_renewed", task=over[0], error=repr(over[1]))
            await self.start()  # while the broker is away this raises; a later send tries again
            await _close(old, 0)  # broken: what it holds goes through the new one
            return self._producer

    def _remember(self, name: tuple[str, str], sending: asyncio.Future) -> None:
        if len(self._sending) >= MAX_REMEMBERED:  # forget settled sends nobody asked after
            for done in [n for n, f in self._sending.items() if f.done()]:
                del self._sending[done]
        self._sending[name] = sending


def _failed(sending: asyncio.Future) -> bool:
    return sending.done() and (sending.cancelled() or sending.exception() is not None)


async def _close(producer: AIOKafkaProducer, timeout: float) -> None:
    """Deliver what is buffered for at most `timeout` seconds (0: give it up at once: its
    senders send it again, with the same record ids), then stop the producer."""
    try:
        await asyncio.wait_for(producer.flush(), timeout)
    except TimeoutError:
        # The broker is away: give up what is buffered, or stop() would wait for it for ever.
        producer._message_accumulator.fail_all(KafkaTimeoutError("producer stopped"))
    liveness.forget_dead_metadata_task(producer.client)
    await liveness.step_within(producer.stop, liveness.STOP_WITHIN)
