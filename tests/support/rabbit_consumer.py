"""A RabbitBus consumer in its own process that never acks, so a test can SIGKILL it mid-message.

Usage: python -m tests.support.rabbit_consumer AMQP_URL PREFIX QUEUE
Prints `received <envelope id>` when the handler has the message.
"""

from __future__ import annotations

import asyncio
import sys

from shared.envelope import Envelope
from shared.rabbit import RabbitBus
from shared.retry import RetryPolicy


async def hold(envelope: Envelope) -> None:
    """Tell the test we have the message, then never return, so it is never acked."""
    print(f"received {envelope.id}", flush=True)
    await asyncio.Event().wait()


async def main(url: str, prefix: str, queue: str) -> None:
    bus = RabbitBus(url, prefix=prefix)
    await bus.start()
    # `hold` never fails, so no retry queue is ever used: any policy will do.
    await bus.consume(queue, hold, retry=RetryPolicy((1.0,)))
    print("consuming", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
