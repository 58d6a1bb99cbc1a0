"""Log lines carry the trace and span of the work they describe, as JSON in the stack."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from shared.logging import add_trace_ids, configure_logging

pytestmark = pytest.mark.unit

# A provider of the test's own: spans with real ids, and the process's global one left alone.
tracer = TracerProvider().get_tracer(__name__)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """What the service's JSON logging writes; the previous logging set-up is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("json", "INFO")
    written = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(written)
    yield written
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(written: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in written.getvalue().splitlines()]


def test_a_line_logged_inside_a_span_carries_its_trace_and_span_ids(json_logs):
    with tracer.start_as_current_span("handle order.paid") as span:
        structlog.get_logger("test").info("message handled", correlation_id="corr-1")
    context = span.get_span_context()

    (line,) = lines(json_logs)
    assert line["event"] == "message handled"
    assert line["correlation_id"] == "corr-1"
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_a_stdlib_line_inside_a_span_carries_them_too(json_logs):
    with tracer.start_as_current_span("request") as span:
        logging.getLogger("uvicorn.error").warning("slow request")

    (line,) = lines(json_logs)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_a_line_outside_any_span_has_no_trace_ids(json_logs):
    structlog.get_logger("test").info("service started")

    (line,) = lines(json_logs)
    assert "trace_id" not in line and "span_id" not in line


def test_ids_bound_by_the_caller_are_kept():
    with tracer.start_as_current_span("inner"):
        event = add_trace_ids(None, "info", {"event": "x", "trace_id": "from-a-message"})
    assert event["trace_id"] == "from-a-message"
