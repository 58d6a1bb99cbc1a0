"""The one Apache Kafka release every path runs (native jars, compose, testcontainers), and its settings."""

from __future__ import annotations

from pathlib import Path

# The newest Apache Kafka release; aiokafka 0.14 speaks its protocol (checked against a 4.4.0
# broker: idempotent produce, groups, commits, admin). Change it here, in the pom and in compose.
KAFKA_VERSION = "4.4.0"

BROKER_PROPERTIES = Path(__file__).parent / "kafka" / "broker.properties"


def broker_settings() -> dict[str, str]:
    """The local broker's own settings (broker.properties), the same on every path."""
    settings: dict[str, str] = {}
    for line in BROKER_PROPERTIES.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings
