"""Cluster mode's wiring, without servers: what the services are told, and what each node runs."""

from __future__ import annotations

import json

import pytest

from shared.rabbit.cluster import ClusterConnection, node_urls
from switchyard.stack.backends import external_endpoints
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.kafka_release import broker_settings
from switchyard.stack.native import NativeStack, Ports, saved_nodes
from switchyard.stack.processes import StackError
from switchyard.stack.servers import Kafka
from switchyard.stack.services import SERVICES, service_env

pytestmark = pytest.mark.unit

NODES = ("amqp://guest:guest@127.0.0.1:25672/", "amqp://guest:guest@127.0.0.1:25772/",
         "amqp://guest:guest@127.0.0.1:25872/")  # fmt: skip
CLUSTER = Endpoints("native", "postgresql://a:b@127.0.0.1:1/switchyard", NODES[0],
                    "127.0.0.1:29092,127.0.0.1:29192,127.0.0.1:29292", "state", NODES)  # fmt: skip
SINGLE = Endpoints("native", "postgresql://a:b@127.0.0.1:1/switchyard", NODES[0], "127.0.0.1:29092")


def test_a_single_node_stack_tells_the_services_what_it_always_did():
    env = service_env(SERVICES[0], SINGLE)
    assert env["AMQP_URL"] == NODES[0]
    assert "KAFKA_REPLICATION_FACTOR" not in env and "KAFKA_MIN_INSYNC_REPLICAS" not in env


def test_a_cluster_gives_the_services_every_node_and_production_replication():
    env = service_env(SERVICES[0], CLUSTER)
    assert node_urls(env["AMQP_URL"]) == list(NODES)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == CLUSTER.kafka_bootstrap
    assert (env["KAFKA_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")


def test_kafka_replication_counts_kafka_brokers_not_rabbitmq_nodes():
    three_brokers = Endpoints("external", SINGLE.database_url, NODES[0], CLUSTER.kafka_bootstrap)
    assert (three_brokers.nodes, three_brokers.kafka_replication) == (1, (3, 2))
    env = service_env(SERVICES[0], three_brokers)
    assert (env["KAFKA_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert env["AMQP_URL"] == NODES[0]
    one_broker = Endpoints("external", SINGLE.database_url, NODES[0], SINGLE.kafka_bootstrap,
                           amqp_nodes=NODES)  # fmt: skip
    assert (one_broker.nodes, one_broker.kafka_replication) == (3, (1, 1))
    two_brokers = Endpoints("external", SINGLE.database_url, NODES[0], "a:1, b:2")
    assert two_brokers.kafka_replication == (2, 1)


def test_endpoints_keep_their_nodes_through_the_state_file(tmp_path):
    CLUSTER.save(tmp_path / "endpoints.json")
    assert Endpoints.load(tmp_path / "endpoints.json") == CLUSTER
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in vars(SINGLE).items()}))
    assert Endpoints.load(tmp_path / "old.json").nodes == 1  # written before cluster mode


def test_external_urls_of_a_cluster_are_read_as_its_nodes():
    env = {"DATABASE_URL": CLUSTER.database_url, "AMQP_URL": ",".join(NODES),
           "KAFKA_BOOTSTRAP_SERVERS": CLUSTER.kafka_bootstrap}  # fmt: skip
    endpoints = external_endpoints(env, for_tests=False)
    assert endpoints is not None
    assert endpoints.amqp_url == NODES[0] and endpoints.amqp_nodes == NODES


def test_a_cluster_node_knows_every_voter_and_replicates_like_production(tmp_path):
    node = Kafka(tmp_path, 29192, 29193, node_id=2, voters={1: 29093, 2: 29193, 3: 29293})
    node._write_config()
    lines = (tmp_path / "server.properties").read_text().splitlines()
    written = dict(line.split("=", 1) for line in lines)
    assert written["node.id"] == "2"
    assert written["controller.quorum.voters"] == (
        "1@127.0.0.1:29093,2@127.0.0.1:29193,3@127.0.0.1:29293"
    )
    assert "controller.quorum.bootstrap.servers" not in written
    assert broker_settings(3).items() <= written.items()
    assert written["min.insync.replicas"] == "2"
    assert written["offsets.topic.replication.factor"] == "3"


def test_each_node_of_a_cluster_has_its_own_ports_and_the_stack_remembers_its_size(tmp_path):
    stack = NativeStack(tmp_path, nodes=3)
    ports = [stack.postgres.port, stack.rabbitmq[0].epmd_port]
    ports += [p for r in stack.rabbitmq for p in (r.port, r.dist_port)]
    ports += [p for k in stack.kafka for p in (k.port, k.controller_port)]
    assert len(ports) == len(set(ports)) == 2 + 3 * 4
    # Each rabbitmqctl takes a port from the ten above its node's: none is another server's.
    controls = {p for r in stack.rabbitmq for p in range(r.dist_port + 1, r.dist_port + 11)}
    assert not controls & set(ports)
    assert {r.epmd_port for r in stack.rabbitmq} == {stack.ports["epmd"]}  # one epmd
    assert len({r.cookie for r in stack.rabbitmq}) == 1  # one Erlang cookie
    assert len({k.cluster_id for k in stack.kafka}) == 1  # formatted as one cluster
    assert list(stack.servers) == ["postgres", "rabbitmq-1", "rabbitmq-2", "rabbitmq-3",
                                   "kafka-1", "kafka-2", "kafka-3"]  # fmt: skip
    (tmp_path / "ports.json").write_text(json.dumps(stack.ports.by_name))
    assert saved_nodes(tmp_path) == 3
    assert NativeStack(tmp_path).nodes == 3
    with pytest.raises(StackError, match="stop it first"):
        NativeStack(tmp_path, nodes=1)


def test_a_single_node_stack_keeps_its_names_and_ports():
    ports = Ports.choose(1, {"postgres": 1, "amqp": 2})
    assert set(ports.by_name) == {"postgres", "epmd", "amqp", "rabbit_dist", "kafka",
                                  "kafka_controller"}  # fmt: skip


async def test_the_cluster_connection_starts_at_the_first_node_and_moves_in_turn():
    connection = ClusterConnection(list(NODES))
    assert str(connection.url) == NODES[0]
    seen = []
    for _ in NODES:
        connection._move()
        seen.append(str(connection.url))
    assert seen == [NODES[1], NODES[2], NODES[0]]


def test_switchyard_dlq_is_given_every_rabbitmq_node_of_the_stack(monkeypatch):
    from switchyard import dlq
    from switchyard.stack import control

    monkeypatch.setattr(control, "current", lambda: CLUSTER)
    where = dlq.scope(None, None, "", None, None)
    assert node_urls(where.amqp_url) == list(NODES)  # node 1 down: the next one answers
    assert where.kafka == CLUSTER.kafka_bootstrap
