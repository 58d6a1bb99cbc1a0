"""RabbitMQ adapter: topology, confirmed publishing, consumers with delayed retries and parking."""

from shared.errors import PublishError
from shared.rabbit.bus import RabbitBus
from shared.rabbit.consumer import Delivery, Handler, RabbitConsumer, current_delivery
from shared.rabbit.topology import RetryPolicy, parking_queue, retry_queue

__all__ = [
    "Delivery",
    "Handler",
    "PublishError",
    "RabbitBus",
    "RabbitConsumer",
    "RetryPolicy",
    "current_delivery",
    "parking_queue",
    "retry_queue",
]
