"""Publishing that only returns once the broker has taken responsibility for the message."""

from __future__ import annotations

import asyncio

import aiormq
from aio_pika.abc import AbstractChannel, AbstractMessage, AbstractRobustChannel
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from shared.errors import PublishError


async def confirmed_publish(
    channel: AbstractChannel,
    exchange: str,
    message: AbstractMessage,
    routing_key: str,
    *,
    confirm_timeout: float,
) -> None:
    """Publish as mandatory; a nack, a timeout or a returned message raises PublishError.

    A queue at its length limit with `x-overflow: reject-publish` nacks: that is a PublishError
    too, and the outbox relay tries the row again later.
    """
    where = f"exchange {exchange!r} with routing key {routing_key!r}"
    try:
        async with asyncio.timeout(confirm_timeout):
            if isinstance(channel, AbstractRobustChannel):
                await _reopened(channel)
            target = (
                channel.default_exchange
                if exchange == ""
                else (await channel.get_exchange(exchange, ensure=False))
            )
            result = await target.publish(message, routing_key, mandatory=True)
    except TimeoutError as exc:
        raise PublishError(f"no broker confirm within {confirm_timeout}s for {where}") from exc
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        raise PublishError(f"broker refused message for {where}: {exc}") from exc
    # aio-pika hands an unroutable mandatory message back instead of raising.
    if not isinstance(result, aiormq.spec.Basic.Ack):
        reply = getattr(getattr(result, "delivery", None), "reply_text", None) or "no confirm"
        raise PublishError(f"unroutable message for {where}: {reply}")


async def _reopened(channel: AbstractRobustChannel) -> None:
    """Wait until a channel the broker closed (say, over a missing exchange) is open again."""
    # aio-pika reopens it from a background task and marks it "restoring" only once that task
    # runs, so `ready()` alone can return while the channel is still closed.
    while channel.is_closed:  # noqa: ASYNC110 (no event exists for "closed, not yet restoring")
        await asyncio.sleep(0.01)
    await channel.ready()
