"""The one Apache Kafka release every path runs (native jars, compose, testcontainers), and its settings."""

from __future__ import annotations

from pathlib import Path

# The newest Apache Kafka release; aiokafka 0.14 speaks its protocol (checked against a 4.4.0
# broker: idempotent produce, groups, commits, admin). Change it here, in the pom and in compose.
KAFKA_VERSION = "4.4.0"

BROKER_PROPERTIES = Path(__file__).parent / "kafka" / "broker.properties"


# A cluster of three keeps what production keeps: three copies of everything, and a write
# acknowledged (acks=all) once two have it, so one node may die without losing any.
CLUSTER_SETTINGS = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
}


def broker_settings(nodes: int = 1) -> dict[str, str]:
    """The local broker's own settings (broker.properties), the same on every path; a node of a
    cluster (`nodes` 3) replicates like production."""
    settings: dict[str, str] = {}
    for line in BROKER_PROPERTIES.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings | (CLUSTER_SETTINGS if nodes > 1 else {})
