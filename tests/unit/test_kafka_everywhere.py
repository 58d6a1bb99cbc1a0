"""One Kafka on every path: compose and testcontainers run the same release with the same settings.

Neither path can run without a Docker engine, so this reads what they would give the image.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchyard.stack import docker
from switchyard.stack.kafka_release import (
    BROKER_PROPERTIES,
    JVM_OPTIONS,
    KAFKA_VERSION,
    broker_settings,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
MOUNTED_CONFIG = "/mnt/shared/config/server.properties"  # the one file the image merges with env


def compose_service(name: str) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


def compose_kafka_env() -> dict[str, str]:
    return {key: str(value) for key, value in compose_service("kafka")["environment"].items()}


def image_property(env_name: str) -> str:
    """The server property the apache/kafka image makes of a KAFKA_* variable.

    Its KafkaDockerWrapper: drop KAFKA_, lower-case, `_` -> `.`, then `...` -> `-`, `..` -> `_`.
    """
    dotted = env_name.removeprefix("KAFKA_").lower().replace("_", ".")
    return dotted.replace("...", "-").replace("..", "_")


def test_broker_properties_has_the_settings_every_path_shares():
    settings = broker_settings()
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    assert settings["group.min.session.timeout.ms"] == "1000"
    assert settings["auto.create.topics.enable"] == "false"
    assert not any(key.startswith("#") or not key for key in settings)


def test_compose_and_testcontainers_run_the_same_kafka_release():
    images = {compose_service("kafka")["image"], docker.KAFKA_IMAGE}
    assert images == {f"apache/kafka:{KAFKA_VERSION}"}


def test_compose_and_testcontainers_run_the_same_postgres_and_rabbitmq():
    assert compose_service("postgres")["image"] == docker.POSTGRES_IMAGE
    assert compose_service("rabbitmq")["image"] == docker.RABBITMQ_IMAGE


def test_compose_gives_the_kafka_image_broker_properties_itself():
    mounts = {}
    for volume in compose_service("kafka")["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert MOUNTED_CONFIG in mounts, "broker.properties is not mounted where the image reads it"
    assert (COMPOSE.parent / mounts[MOUNTED_CONFIG]).resolve() == BROKER_PROPERTIES.resolve()


def test_compose_environment_does_not_override_broker_properties():
    # The image appends its KAFKA_* variables to the mounted file, so a variable would win.
    overridden = {image_property(name) for name in compose_kafka_env()} & broker_settings().keys()
    assert not overridden


def test_every_path_runs_the_broker_jvm_with_the_same_options():
    # Kafka's start scripts in the image read KAFKA_JVM_PERFORMANCE_OPTS (never a server property).
    options = " ".join(JVM_OPTIONS)
    assert compose_kafka_env()["KAFKA_JVM_PERFORMANCE_OPTS"] == options
    assert docker.kafka_env()["KAFKA_JVM_PERFORMANCE_OPTS"] == options


def test_compose_keeps_kafka_data_in_its_volume():
    kafka = compose_service("kafka")
    targets = {volume.split(":")[1] for volume in kafka["volumes"]}
    assert compose_kafka_env()["KAFKA_LOG_DIRS"] in targets


def test_compose_healthcheck_asks_a_listener_kafka_has():
    kafka = compose_service("kafka")
    port = re.search(r"--bootstrap-server \S+:(\d+)", " ".join(kafka["healthcheck"]["test"]))
    assert port is not None
    assert f":{port.group(1)}" in compose_kafka_env()["KAFKA_LISTENERS"]


def test_compose_services_reach_kafka_on_its_internal_listener():
    advertised = compose_kafka_env()["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("users", "orders", "payments"):
        bootstrap = compose_service(name)["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert f"INTERNAL://{bootstrap}" in advertised.split(",")


@pytest.mark.parametrize("prop", ["a.b", "a_b", "a-b", "log.dirs", "x.y_z-w.v"])
def test_testcontainers_names_variables_the_way_the_image_reads_them(prop: str):
    assert image_property(docker.kafka_env_name(prop)) == prop


def test_testcontainers_gets_broker_properties_as_variables():
    settings = broker_settings()
    broker_env = docker.kafka_broker_env()
    assert set(broker_env) == {"KAFKA_" + key.replace(".", "_").upper() for key in settings}
    assert {image_property(name): value for name, value in broker_env.items()} == settings


def test_testcontainers_node_settings_leave_broker_properties_alone():
    assert not {image_property(name) for name in docker.KAFKA_NODE_ENV} & broker_settings().keys()


class FakeContainer:
    """What _start_kafka uses of a testcontainers DockerContainer, without Docker."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.ports: list[int] = []
        self.command: list[str] = []
        self.started = False
        self.files: dict[str, tuple[bytes, int]] = {}

    def with_env(self, key: str, value: str) -> FakeContainer:
        self.env[key] = value
        return self

    def with_exposed_ports(self, *ports: int) -> FakeContainer:
        self.ports += ports
        return self

    def with_command(self, command: list[str]) -> FakeContainer:
        self.command = command
        return self

    def start(self) -> FakeContainer:
        self.started = True
        return self

    def get_container_host_ip(self) -> str:
        assert self.started
        return "docker.example"

    def get_exposed_port(self, port: int) -> int:
        assert self.started and port in self.ports
        return 49153

    def get_wrapped_container(self) -> FakeContainer:
        return self

    def put_archive(self, path: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member)
                assert extracted is not None
                self.files[str(Path(path) / member.name)] = (extracted.read(), member.mode)
        return True

    def get_logs(self) -> tuple[bytes, bytes]:
        started = b"[KafkaRaftServer nodeId=1] Kafka Server started" if self.files else b""
        return started, b""

    def reload(self) -> None:
        pass

    @property
    def status(self) -> str:
        return "running"


def test_testcontainers_kafka_gets_the_shared_settings_and_advertises_the_mapped_port():
    container = FakeContainer()
    bootstrap = docker._start_kafka(container)  # type: ignore[arg-type]

    assert bootstrap == "docker.example:49153"
    assert container.env == docker.kafka_env()
    for name, value in docker.kafka_broker_env().items():
        assert container.env[name] == value
    assert container.env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert docker.KAFKA_PORT in container.ports

    script, mode = container.files[docker.KAFKA_START_SCRIPT]
    assert mode & 0o444 == 0o444  # the image runs as appuser, not root
    lines = script.decode().splitlines()
    assert "export KAFKA_ADVERTISED_LISTENERS='HOST://docker.example:49153," in lines[1]
    assert lines[-1] == "exec /etc/kafka/docker/run"  # the image's own start, unchanged
    # The container waits for exactly that script, and for its last line.
    assert docker.KAFKA_START_SCRIPT in container.command[-1]
    assert re.search(container.command[-1].split("'")[1], lines[-1])


def test_the_native_jars_are_the_same_kafka_release():
    pom = (ROOT / "switchyard" / "stack" / "kafka" / "pom.xml").read_text()
    assert re.search(r"<kafka.version>(.+?)</kafka.version>", pom).group(1) == KAFKA_VERSION


def test_the_native_node_takes_broker_properties_and_sets_only_its_own_place(tmp_path):
    from switchyard.stack.servers import Kafka

    node = Kafka(tmp_path, 29092, 29093)
    node._write_config()
    written = dict(
        line.split("=", 1) for line in (tmp_path / "server.properties").read_text().splitlines()
    )
    assert broker_settings().items() <= written.items()
    assert written["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert written["log.dirs"] == str(tmp_path / "data")
