"""The stack in containers (testcontainers), for machines where a Docker engine answers."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from switchyard.stack.endpoints import Endpoints
from switchyard.stack.kafka_release import JVM_OPTIONS, KAFKA_VERSION, broker_settings

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# The same images as compose/docker-compose.yml (tests/unit/test_kafka_everywhere.py checks).
POSTGRES_IMAGE = "postgres:16-alpine"
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"

# testcontainers' KafkaContainer drives Confluent's cp-kafka start scripts (/etc/confluent/docker)
# and refuses KRaft below tag 7.0.0, so it cannot run apache/kafka: the container is set up here.
KAFKA_PORT = 9092  # HOST listener: clients on the Docker host, through the mapped port
KAFKA_START_SCRIPT = "/tmp/switchyard-kafka-start.sh"
KAFKA_STARTED = r"Kafka Server started"  # KafkaRaftServer's line once the node serves clients
KAFKA_NODE_ENV = {
    # One node in KRaft mode: broker and controller, no ZooKeeper.
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    # HOST for the tests (advertised by the start script, once the mapped port is known);
    # INTERNAL only for the broker itself, which needs an inter-broker listener.
    "KAFKA_LISTENERS": f"HOST://:{KAFKA_PORT},INTERNAL://:19092,CONTROLLER://:9093",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,HOST:PLAINTEXT",
    "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
    "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
}


def kafka_env_name(prop: str) -> str:
    """The apache/kafka image's variable for a server property: `a.b_c-d` -> `KAFKA_A_B__C___D`."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def kafka_broker_env() -> dict[str, str]:
    """broker.properties (the settings every path shares) as the image's KAFKA_* variables."""
    return {kafka_env_name(prop): value for prop, value in broker_settings().items()}


def kafka_env() -> dict[str, str]:
    """Everything the Kafka container is given in its environment, but the advertised listeners."""
    broker = kafka_broker_env()
    clash = broker.keys() & KAFKA_NODE_ENV.keys()
    if clash:  # the node's own settings are this path's; broker.properties must leave them alone
        raise ValueError(f"broker.properties sets what each path sets itself: {sorted(clash)}")
    return {**KAFKA_NODE_ENV, **broker, "KAFKA_JVM_PERFORMANCE_OPTS": " ".join(JVM_OPTIONS)}


def kafka_start_script(host: str, port: int) -> str:
    """The container's start, once the host and port clients reach it on are known."""
    advertised = f"HOST://{host}:{port},INTERNAL://localhost:19092"
    return f"#!/bin/bash\nexport KAFKA_ADVERTISED_LISTENERS='{advertised}'\nexec /etc/kafka/docker/run\n"


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


def _start_kafka(kafka: DockerContainer) -> str:
    """Start apache/kafka in `kafka`; returns its bootstrap address (host:port) once it serves.

    A client must be told the address it reaches the broker on, and the host port is known only
    after the container starts: the container waits for a start script, which is written then.
    """
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    for name, value in kafka_env().items():
        kafka.with_env(name, value)
    kafka.with_exposed_ports(KAFKA_PORT)
    script = KAFKA_START_SCRIPT
    # Until the script's last line is there (not just the file): then it has been written whole.
    wait = f"until grep -qs '^exec ' {script}; do sleep 0.1; done; exec bash {script}"
    kafka.with_command(["bash", "-c", wait])
    kafka.start()
    host, port = kafka.get_container_host_ip(), kafka.get_exposed_port(KAFKA_PORT)
    content = kafka_start_script(host, port).encode()
    with io.BytesIO() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name=script.lstrip("/"))
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
        kafka.get_wrapped_container().put_archive("/", archive.getvalue())
    LogMessageWaitStrategy(KAFKA_STARTED).wait_until_ready(kafka)
    return f"{host}:{port}"


@contextmanager
def containers() -> Iterator[Endpoints]:
    """Postgres, RabbitMQ and Kafka (KRaft) containers for one test session, removed afterwards."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer
    from testcontainers.core.container import DockerContainer

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
        kafka = DockerContainer(KAFKA_IMAGE)
        stack.callback(kafka.stop)  # also when it fails to start
        kafka_bootstrap = _start_kafka(kafka)
        params = rabbit.get_connection_params()
        yield Endpoints(
            backend="docker",
            database_url=postgres.get_connection_url(),
            amqp_url=f"amqp://{rabbit.username}:{rabbit.password}@{params.host}:{params.port}/",
            kafka_bootstrap=kafka_bootstrap,
        )
