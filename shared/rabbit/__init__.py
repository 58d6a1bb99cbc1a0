"""RabbitMQ adapter: topology, confirmed publishing, consumers with delayed retries and parking."""

from shared.rabbit.bus import RabbitBus
from shared.rabbit.consumer import Delivery, RabbitConsumer, current_delivery
from shared.rabbit.topology import parking_queue, retry_queue

__all__ = [
    "Delivery",
    "RabbitBus",
    "RabbitConsumer",
    "current_delivery",
    "parking_queue",
    "retry_queue",
]
