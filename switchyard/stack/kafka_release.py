"""The one Apache Kafka release every path runs (native jars, compose, testcontainers), and its settings."""

from __future__ import annotations

from pathlib import Path

# The newest Apache Kafka release; aiokafka 0.14 speaks its protocol (checked against a 4.4.0
# broker: idempotent produce, groups, commits, admin). Change it here, in the pom and in compose.
KAFKA_VERSION = "4.4.0"

BROKER_PROPERTIES = Path(__file__).parent / "kafka" / "broker.properties"

# The JVM options of the local broker on every path (compose and testcontainers pass them as
# KAFKA_JVM_PERFORMANCE_OPTS, which Kafka's start scripts read). G1 with short pauses, as Kafka's
# own scripts run it, and the client compiler alone: a fresh broker's optimising compiler spent
# half its CPU for over a minute under load (C2 threads, `make bench`), about 0.8 ms an order,
# and a broker on a laptop or in a test run rarely lives long enough to earn that back.
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")  # fmt: skip


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
