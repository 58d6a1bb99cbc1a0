"""One order is one trace: from the POST, over HTTP, both brokers and the webhook, to users."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from shared.tracing import configure_tracing, export_spans
from tests.support.eventually import eventually
from tests.support.system import running_system

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends during the test (all in-process services share a provider)."""
    exporter = InMemorySpanExporter()
    export_spans(configure_tracing("switchyard-tests"), SimpleSpanProcessor(exporter))
    yield exporter
    # A provider cannot drop a processor: a stopped exporter refuses, and keeps, nothing more.
    exporter.shutdown()


def consumed(spans: InMemorySpanExporter, channel: str, type: str) -> list[ReadableSpan]:
    """The CONSUMER spans of handling `type` from `channel` (a queue or a topic)."""
    return [
        span
        for span in spans.get_finished_spans()
        if span.kind is SpanKind.CONSUMER
        and span.attributes["messaging.destination.name"] == channel
        and span.attributes["cloudevents.event_type"] == type
    ]


def trace_of(span: ReadableSpan) -> str:
    return format_trace_id(span.context.trace_id)


async def test_the_last_consumer_continues_the_trace_of_the_post(stack, database, names, spans):
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with running_system(stack, database, names) as system:
        await system.paid_order(traceparent=f"00-{trace_id}-{parent_id}-01")

        # users handling order.paid from Kafka: the end of the saga, after both brokers.
        (last,) = await eventually(
            lambda: consumed(spans, "orders.events", "order.paid"), message="order.paid handled"
        )
    assert last.attributes["messaging.system"] == "kafka"
    assert last.attributes["messaging.consumer.group.name"] == "users"
    assert trace_of(last) == trace_id

    finished = spans.get_finished_spans()
    (post,) = [s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /api/v1/orders"]
    assert (trace_of(post), f"{post.parent.span_id:016x}") == (trace_id, parent_id)
    # orders asked users over HTTP, and users answered inside the same trace.
    (call,) = [s for s in finished if s.kind is SpanKind.CLIENT and trace_of(s) == trace_id]
    (answer,) = [s for s in finished if s.parent and s.parent.span_id == call.context.span_id]
    assert (answer.kind, answer.name) == (SpanKind.SERVER, "GET /api/v1/users/{user_id}")

    # payments took the command from RabbitMQ inside the order's trace...
    (command,) = consumed(spans, "payments.payment-requests", "payment.requested")
    assert command.attributes["messaging.system"] == "rabbitmq"
    assert trace_of(command) == trace_id
    # ...and so did orders take the event the webhook caused, though the provider sent no trace.
    (succeeded,) = consumed(spans, "orders.payment-events", "payment.succeeded")
    assert trace_of(succeeded) == trace_id
    (applied,) = [s for s in finished if s.name == "payment webhook applied"]
    (webhook,) = [s for s in finished if s.name == "POST /webhooks/psp"]
    assert trace_of(applied) == trace_id != trace_of(webhook)
    assert [link.context.span_id for link in applied.links] == [webhook.context.span_id]


async def test_a_request_without_trace_context_starts_one_trace(stack, database, names, spans):
    async with running_system(stack, database, names) as system:
        await system.paid_order()
        (last,) = await eventually(
            lambda: consumed(spans, "orders.events", "order.paid"), message="order.paid handled"
        )

    (post,) = [s for s in spans.get_finished_spans() if s.name == "POST /api/v1/orders"]
    assert post.parent is None  # a root: the trace began at the POST
    assert trace_of(last) == trace_of(post)
