"""The Kafka removal mark and the headers a replay keeps: pure rules, no broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka.structs import OffsetAndMetadata

from shared import failure_headers as fh
from shared.dead_letters import RemovalMark
from shared.dead_letters.letter import attempts, message_id, parked_at, reason
from shared.dead_letters.rabbit import replay_headers

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
