"""What the benchmarks share: the servers of a running `make up`, and percentiles."""

from __future__ import annotations

import pytest

import bench.common
from bench.common import own_database, percentiles, with_make_up_state
from switchyard.stack import control
from switchyard.stack.endpoints import Endpoints

pytestmark = pytest.mark.unit

URLS = ("postgresql://admin:pw@127.0.0.1:25432/switchyard", "amqp://g:g@127.0.0.1:25672/",
        "127.0.0.1:29092")  # fmt: skip


@pytest.fixture
def make_up(tmp_path, monkeypatch):
    """A `make up` recorded in a state directory of this test's own."""
    monkeypatch.setattr(control, "STATE", tmp_path)

    def record(backend: str, *urls: str) -> None:
        Endpoints(backend, *urls, state=str(tmp_path)).save(tmp_path / "endpoints.json")

    return record


def test_the_urls_of_a_native_make_up_bring_its_state_so_its_servers_cpu_counts(make_up, tmp_path):
    make_up("native", *URLS)
    assert with_make_up_state(Endpoints("external", *URLS)).state == str(tmp_path)


@pytest.mark.parametrize(
    ("recorded", "given"),
    [
        (("native", *URLS), ("external", *URLS[:2], "127.0.0.1:39092")),  # other servers
        (("docker", *URLS), ("external", *URLS)),  # not processes of this machine's
        (None, ("external", *URLS)),  # no make up
    ],
)
def test_other_servers_get_no_state(make_up, recorded, given):
    if recorded:
        make_up(*recorded)
    assert with_make_up_state(Endpoints(*given)).state is None


def test_one_sample_has_percentiles_of_its_own():
    assert percentiles([5.0]) == {"p50": 5.0, "p95": 5.0, "p99": 5.0, "max": 5.0, "n": 1}
    assert percentiles([]) == {}


def test_a_database_whose_migrations_fail_is_dropped(monkeypatch):
    dropped = []

    def fails(url: str) -> None:
        raise RuntimeError("migrations of orders failed")

    monkeypatch.setattr(bench.common, "bootstrap", fails)
    monkeypatch.setattr(bench.common, "drop_database", lambda url, name: dropped.append(name))
    with pytest.raises(RuntimeError), own_database(Endpoints("external", *URLS)):
        pass
    assert len(dropped) == 1
    assert dropped[0].startswith("bench_")
