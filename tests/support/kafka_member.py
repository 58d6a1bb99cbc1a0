"""A Kafka group member in its own process, so a test can SIGKILL it in the middle of a record.

Usage: python -m tests.support.kafka_member BOOTSTRAP PREFIX TOPIC GROUP HOLD_ID

Prints one JSON line per event on stdout: {"assigned": [...]}, {"handled": id} for each record it
finished (committed with the rest of its batch), {"holding": id} when it reaches the record
with id HOLD_ID, which it never finishes.
"""

from __future__ import annotations

import asyncio
import json
import sys

import structlog

from shared.envelope import Envelope
from shared.kafka import KafkaBus
from shared.retry import RetryPolicy
from tests.support.services import QUICK_GROUPS


def report(**event: object) -> None:
    print(json.dumps(event), flush=True)


async def main(bootstrap: str, prefix: str, topic: str, group: str, hold_id: str) -> None:
    async def handle(envelope: Envelope) -> None:
        if envelope.id == hold_id:
            report(holding=envelope.id)
            await asyncio.Event().wait()  # the test kills us here, before the commit
        report(handled=envelope.id)

    bus = KafkaBus(bootstrap, prefix=prefix, group_timings=QUICK_GROUPS)
    await bus.start()
    member = await bus.consume([topic], group, handle, retry=RetryPolicy((0.2, 1.0)))
    partitions = await member.wait_assigned(timeout=30)
    report(assigned=sorted(tp.partition for tp in partitions))
    await asyncio.Event().wait()


if __name__ == "__main__":
    # stdout carries the report; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(main(*sys.argv[1:6]))
