"""The stack in containers (testcontainers), for machines where a Docker engine answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from switchyard.stack.endpoints import Endpoints

POSTGRES_IMAGE = "postgres:16-alpine"
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.7.1"  # Apache Kafka, run in KRaft mode below


def docker_answers() -> bool:
    """True when a Docker engine (not just the client) responds within a moment."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def containers() -> Iterator[Endpoints]:
    """Postgres, RabbitMQ and Kafka (KRaft) containers for one test session, removed afterwards."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer

    with ExitStack() as stack:
        postgres = stack.enter_context(
            PostgresContainer(
                POSTGRES_IMAGE,
                username="switchyard",
                password="switchyard",
                dbname="switchyard",
                driver=None,
            )
        )
        rabbit = stack.enter_context(RabbitMqContainer(RABBITMQ_IMAGE))
        kafka = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        params = rabbit.get_connection_params()
        yield Endpoints(
            backend="docker",
            database_url=postgres.get_connection_url(),
            amqp_url=f"amqp://{rabbit.username}:{rabbit.password}@{params.host}:{params.port}/",
            kafka_bootstrap=kafka.get_bootstrap_server(),
        )
