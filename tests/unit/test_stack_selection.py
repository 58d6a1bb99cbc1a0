"""Which servers a run uses: STACK, then environment URLs, then Docker, then local processes."""

import pytest

from switchyard.stack.backends import Compose, Containers, External, Native
from switchyard.stack.bootstrap import database_of, service_url, with_database
from switchyard.stack.processes import StackError
from switchyard.stack.selection import choose_backend, external_endpoints, open_stack

pytestmark = pytest.mark.unit

URLS = {
    "DATABASE_URL": "postgresql://a:b@db:5432/switchyard",
    "AMQP_URL": "amqp://guest:guest@mq:5672/",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
}


def never() -> bool:
    return False


def always() -> bool:
    return True


def test_forced_backend_wins_over_everything():
    assert choose_backend({"STACK": "native", **URLS}, docker=always) == "native"
    assert choose_backend({"STACK": "Docker"}, docker=never) == "docker"


def test_unknown_forced_backend_is_refused_with_the_choices():
    with pytest.raises(StackError, match="external, docker, native"):
        choose_backend({"STACK": "kubernetes"}, docker=never)


def test_environment_urls_come_before_docker():
    assert choose_backend(URLS, docker=always) == "external"


def test_partial_urls_do_not_count_as_external():
    partial = {k: v for k, v in URLS.items() if k != "AMQP_URL"}
    assert choose_backend(partial, docker=never) == "native"


def test_docker_is_used_when_an_engine_answers():
    assert choose_backend({}, docker=always) == "docker"
    assert choose_backend({}, docker=never) == "native"


def test_tests_prefer_test_prefixed_urls():
    env = {**URLS, **{f"TEST_{k}": v.replace("5432", "6543") for k, v in URLS.items()}}
    assert "6543" in external_endpoints(env, for_tests=True).database_url
    assert "5432" in external_endpoints(env, for_tests=False).database_url


def test_test_prefixed_urls_are_ignored_outside_tests():
    env = {f"TEST_{k}": v for k, v in URLS.items()}
    assert external_endpoints(env, for_tests=False) is None
    assert choose_backend(env, docker=never) == "native"


def test_service_url_logs_in_as_the_service_role():
    url = service_url("postgresql://admin:pw@db:5432/switchyard", "orders")
    assert url == "postgresql://orders_service:orders-dev@db:5432/switchyard"


def test_each_backend_name_opens_its_stack(tmp_path):
    native = open_stack("native", tmp_path, for_tests=True)
    assert isinstance(native, Native) and native.servers.ephemeral
    assert not open_stack("native", tmp_path).servers.ephemeral  # `make up` keeps its data
    assert isinstance(open_stack("external", tmp_path, env=URLS), External)
    with pytest.raises(StackError, match="unknown backend"):
        open_stack("kubernetes", tmp_path)


def test_docker_is_testcontainers_for_tests_and_compose_for_make_up(tmp_path):
    tests, make_up = open_stack("docker", tmp_path, for_tests=True), open_stack("docker", tmp_path)
    assert isinstance(tests, Containers) and tests.local_services
    assert isinstance(make_up, Compose) and not make_up.local_services  # compose runs them
    assert tests.name == make_up.name == "docker"


def test_external_stack_hands_over_the_environment_and_starts_nothing(tmp_path):
    endpoints, started = open_stack("external", tmp_path, env=URLS).start()
    assert (endpoints.database_url, endpoints.kafka_bootstrap, started) == (
        URLS["DATABASE_URL"],
        "kafka:9092",
        [],
    )
    with pytest.raises(StackError, match=r"\[TEST_\]AMQP_URL"):
        open_stack("external", tmp_path, for_tests=True, env={}).start()


def test_another_database_keeps_the_urls_options():
    url = with_database("postgresql://admin:pw@db:5432/switchyard?sslmode=require", "bench_1")
    assert url == "postgresql://admin:pw@db:5432/bench_1?sslmode=require"
    assert database_of(url) == "bench_1"
