"""The Kafka removal mark, the headers a replay keeps, what the CLI says: no broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka.structs import OffsetAndMetadata

from shared import failure_headers as fh
from shared.dead_letters import KafkaDeadLetters, RemovalMark
from shared.dead_letters.letter import attempts, message_id, parked_at, readable_age, reason
from shared.dead_letters.rabbit import replay_headers
from switchyard import dlq

pytestmark = pytest.mark.unit


def test_no_commit_removes_nothing():
    mark = RemovalMark.parse(None)
    assert (mark.below, mark.metadata()) == (0, "")
    assert not mark.removes(0)


def test_removing_out_of_order_keeps_the_gap_and_a_run_moves_the_mark():
    mark = RemovalMark().with_removed(1).with_removed(3).with_removed(4)
    assert (mark.below, mark.metadata()) == (0, "1,3-4")
    assert [o for o in range(6) if mark.removes(o)] == [1, 3, 4]

    mark = mark.with_removed(0)
    assert (mark.below, mark.metadata()) == (2, "3-4")
    assert (mark.with_removed(2).below, mark.with_removed(2).metadata()) == (5, "")


def test_a_committed_mark_reads_back_as_it_was_written():
    mark = RemovalMark(7, frozenset({9, 10, 11, 20}))
    assert RemovalMark.parse(OffsetAndMetadata(7, mark.metadata())) == mark


def test_replay_drops_why_it_failed_and_keeps_where_it_arrived():
    headers = {
        "traceparent": "00-abc",
        fh.ORIGINAL_EXCHANGE: "payments.commands",
        fh.ORIGINAL_ROUTING_KEY: "payment.requested",
        fh.ORIGINAL_QUEUE: "payments.payment-requests",
        fh.ATTEMPTS: 3,
        **fh.error_headers(RuntimeError("boom")),
        "x-delivery-count": 2,
    }
    assert replay_headers(headers) == {
        "traceparent": "00-abc",
        fh.ORIGINAL_EXCHANGE: "payments.commands",
        fh.ORIGINAL_ROUTING_KEY: "payment.requested",
    }


def test_a_message_the_broker_parked_is_read_from_x_death():
    died = datetime(2025, 1, 2, 3, 4, 5)
    headers = {
        "x-death": [
            {
                "reason": "delivery_limit",
                "exchange": "payments.commands",
                "routing-keys": ["payment.requested"],
                "time": died,
            }
        ],
        "x-first-death-reason": "delivery_limit",
    }
    assert reason(headers) == "broker: delivery_limit"
    assert attempts(headers) is None
    assert parked_at(headers, None) == died.replace(tzinfo=UTC)
    assert replay_headers(headers) == {
        fh.ORIGINAL_EXCHANGE: "payments.commands",
        fh.ORIGINAL_ROUTING_KEY: "payment.requested",
    }


def test_a_message_without_an_id_is_named_by_its_body():
    assert message_id("given", b"{}") == "given"
    assert message_id(None, b'{"id": "from-body"}') == "from-body"
    assert message_id(None, b"\xff not json").startswith("sha256:")


def test_an_age_reads_in_the_largest_unit_it_fills():
    ages = [None, 4.25, 90, 2 * 3600, 3 * 86400]
    assert [readable_age(a) for a in ages] == ["?", "4.2s", "1.5m", "2.0h", "3.0d"]


def test_replaying_all_while_another_reader_holds_some_is_not_a_success(capsys):
    act = dlq._each(None, True, "replay")
    assert asyncio.run(act([], 2)) == 1
    assert "2 parked, 2 held by another reader" in capsys.readouterr().err


class Client:
    """Stands in for one Kafka client; its close is recorded, and may fail."""

    def __init__(self, name: str, closed: list[str], *, fails: bool = False) -> None:
        self.name, self.closed, self.fails = name, closed, fails

    async def stop(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} could not close")

    close = stop


async def test_stopping_closes_every_kafka_client_even_when_one_fails():
    dead_letters = KafkaDeadLetters("127.0.0.1:9")
    await dead_letters.stop()  # the real, never started clients
    closed: list[str] = []
    dead_letters._producer = Client("producer", closed, fails=True)
    dead_letters._reader = Client("reader", closed)
    dead_letters._admin = Client("admin", closed)
    with pytest.raises(RuntimeError, match="producer"):
        await dead_letters.stop()
    assert closed == ["producer", "reader", "admin"]
