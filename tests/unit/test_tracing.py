"""Trace context read from both brokers' header shapes, and carried into what a handler owes."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.tracing import WhileExported, consuming, context_from, export_spans, trace_headers

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def trace_id_in(context) -> str:
    return trace.format_trace_id(trace.get_current_span(context).get_span_context().trace_id)


def test_kafka_record_headers_give_the_context_they_carry():
    headers = [
        ("content-type", b"application/cloudevents+json"),
        ("traceparent", TRACEPARENT.encode()),
    ]
    assert trace_id_in(context_from(headers)) == TRACE_ID


def test_amqp_headers_give_the_context_they_carry():
    headers = {"traceparent": TRACEPARENT, "x-attempts": 2}
    assert trace_id_in(context_from(headers)) == TRACE_ID


def test_headers_without_trace_context_leave_the_current_context_in_charge():
    assert context_from({"x-attempts": 1}) is None
    assert context_from([]) is None


def test_outside_any_span_there_is_nothing_to_pass_on():
    assert trace_headers() == {}


def test_what_a_handler_owes_carries_the_trace_of_the_message_it_handles():
    with consuming(
        "kafka", "orders.events", "id-1", "order.paid", [("traceparent", TRACEPARENT.encode())]
    ):
        owed = trace_headers()
    assert owed["traceparent"].split("-")[1] == TRACE_ID


def test_spans_are_recorded_only_once_exported_and_carry_their_ids_either_way():
    provider = TracerProvider(sampler=WhileExported())
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("before") as before:
        unrecorded = before.get_span_context()
        carried = trace_headers()
    assert not before.is_recording()
    assert unrecorded.is_valid  # its ids still go into log lines and message headers
    ids = f"00-{trace.format_trace_id(unrecorded.trace_id)}-{trace.format_span_id(unrecorded.span_id)}-"
    assert carried["traceparent"].startswith(ids)
    assert not int(carried["traceparent"].removeprefix(ids), 16) & 1  # not sampled

    exporter = InMemorySpanExporter()
    export_spans(provider, SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("after") as after:
        assert after.is_recording()
    assert [span.name for span in exporter.get_finished_spans()] == ["after"]
