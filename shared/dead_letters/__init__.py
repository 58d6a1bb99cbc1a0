"""Dead letters an operator can act on: list, show, replay and purge, on both brokers."""

from shared.dead_letters.kafka import KafkaDeadLetters, RemovalMark
from shared.dead_letters.letter import DeadLetter
from shared.dead_letters.rabbit import RabbitDeadLetters

__all__ = ["DeadLetter", "KafkaDeadLetters", "RabbitDeadLetters", "RemovalMark"]
