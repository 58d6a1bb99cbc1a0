"""Publishing to RabbitMQ: CloudEvents properties, broker confirms, refusals the publisher hears."""

from __future__ import annotations

import aio_pika
import pytest

from shared.channels import Channel
from shared.envelope import CONTENT_TYPE, decode
from shared.errors import PublishError
from tests.integration.rabbit.work_queue import (
    COMMANDS,
    EXCHANGE,
    KEY,
    QUEUE,
    TRACEPARENT,
    declare,
    depth_is,
    payment_requested,
    take,
)
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration


async def test_published_message_carries_cloudevents_properties(bus, raw, names):
    await declare(bus)
    envelope = payment_requested()

    await bus.publish(COMMANDS, envelope, headers={"traceparent": TRACEPARENT})

    message = await take(raw, names + QUEUE)
    assert message.content_type == CONTENT_TYPE == "application/cloudevents+json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == envelope.id
    assert message.type == "payment.requested"
    assert message.correlation_id == envelope.correlationid
    assert message.headers["traceparent"] == TRACEPARENT
    assert message.routing_key == KEY
    assert decode(message.body) == envelope


async def test_confirmed_publish_to_a_missing_exchange_raises(bus, raw, names):
    await declare(bus)

    with pytest.raises(PublishError, match="NOT_FOUND"):
        await bus.publish(Channel.rabbit("payments.nowhere", KEY), payment_requested())

    # The broker closed the channel over it; the bus reopens it and keeps publishing.
    await bus.publish(COMMANDS, payment_requested())
    assert await eventually(lambda: depth_is(raw, names + QUEUE, 1))


async def test_unroutable_message_raises(bus):
    await declare(bus)

    with pytest.raises(PublishError, match="unroutable"):
        await bus.publish(Channel.rabbit(EXCHANGE, "payment.nobody-listens"), payment_requested())
