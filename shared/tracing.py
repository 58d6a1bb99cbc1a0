"""OpenTelemetry: W3C trace context across HTTP, the outbox and both brokers; export on request.

One tracer provider per process. In the stack a process runs one service, so its resource names
that service; the tests run several apps in one process, and those share the first provider (a
global provider cannot be replaced, and per-app providers would have to be threaded through every
adapter). Spans say which consumer they belong to in their attributes, so nothing is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind

Exporter = Literal["none", "console", "otlp"]
# AMQP headers map names to values; Kafka record headers are (name, bytes) pairs.
Headers = Mapping[str, Any] | Iterable[tuple[str, Any]]

tracer = trace.get_tracer("switchyard")
_exporting: set[str] = set()


class WhileExported(Sampler):
    """Records spans once something exports them, and only then.

    A recorded span costs its attributes, events and end-of-span processing, and without an
    exporter all of that goes nowhere. An unrecorded span still has its trace and span ids: they
    travel with every message and every log line all the same.
    """

    def __init__(self) -> None:
        self.exported = False

    def should_sample(self, *args, **kwargs) -> SamplingResult:
        return (ALWAYS_ON if self.exported else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return f"WhileExported{{{self.exported}}}"


def configure_tracing(
    service_name: str, exporter: Exporter = "none", *, otlp_endpoint: str | None = None
) -> TracerProvider:
    """Install the process's tracer provider once; add `exporter` unless it is already there.

    Spans are made even without an exporter: their ids travel with every message and every log
    line, so one order can be followed with or without a tracing backend. `otlp_endpoint` is a
    base URL like OTEL_EXPORTER_OTLP_ENDPOINT; without it the exporter reads the OTEL_* variables.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        resource = Resource.create({SERVICE_NAME: service_name})
        # An operator's OTEL_TRACES_SAMPLER wins (the SDK reads it when given no sampler).
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else WhileExported()
        provider = TracerProvider(resource=resource, sampler=sampler)
        trace.set_tracer_provider(provider)
    if exporter != "none" and exporter not in _exporting:
        export_spans(provider, BatchSpanProcessor(_exporter(exporter, otlp_endpoint)))
        _exporting.add(exporter)
    return provider


def export_spans(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Hand every span ended from now on to `processor`: spans are recorded from now on."""
    provider.add_span_processor(processor)
    if isinstance(provider.sampler, WhileExported):
        provider.sampler.exported = True


def _exporter(kind: Exporter, otlp_endpoint: str | None) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    # Imported here: only a process that exports over OTLP pays for loading protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if otlp_endpoint is None:
        return OTLPSpanExporter()
    # An explicit endpoint is the traces URL itself; the variable is the base the SDK extends.
    return OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")


def trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`); {} outside a span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(headers: Headers) -> Context | None:
    """The trace context that message headers carry; None (the current context) if they carry none."""
    fields = propagate.get_global_textmap().fields
    items = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {
        name: value.decode(errors="replace") if isinstance(value, bytes) else value
        for name, value in items
        if name in fields and isinstance(value, str | bytes)
    }
    return propagate.extract(carrier) if "traceparent" in carrier else None


@contextmanager
def consuming(
    system: str,
    channel: str,
    message_id: str,
    message_type: str,
    headers: Headers,
    **attributes: str | int,
) -> Iterator[Span]:
    """A CONSUMER span `<channel> process` around one handler attempt, in the message's trace."""
    with tracer.start_as_current_span(
        f"{channel} process",
        context=context_from(headers),
        kind=SpanKind.CONSUMER,
        attributes=_messaging(system, channel, "process", message_id, message_type) | attributes,
    ) as span:
        yield span


@contextmanager
def publishing(
    system: str, channel: str, message_id: str, message_type: str, headers: Headers
) -> Iterator[Span]:
    """A PRODUCER span `<channel> publish` in the trace of the message being sent.

    The message keeps the context it was created with (written into the outbox row), so its
    consumers are children of the work that owed it, and this span is their sibling.
    """
    with tracer.start_as_current_span(
        f"{channel} publish",
        context=context_from(headers),
        kind=SpanKind.PRODUCER,
        attributes=_messaging(system, channel, "send", message_id, message_type),
    ) as span:
        yield span


@contextmanager
def resumed(headers: Headers, name: str) -> Iterator[Span]:
    """A span in the trace `headers` carry, linked to the current span: work asked for earlier.

    Payments applies a provider's webhook in the trace of the order's payment request; the
    webhook's own request (which has no trace context from the provider) is the link.
    """
    context = context_from(headers)
    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if context is not None and current.is_valid else []
    with tracer.start_as_current_span(name, context=context, links=links) as span:
        yield span


def _messaging(
    system: str, channel: str, operation: str, message_id: str, message_type: str
) -> dict[str, str]:
    return {
        "messaging.system": system,
        "messaging.destination.name": channel,
        "messaging.operation.type": operation,
        "messaging.message.id": message_id,
        "cloudevents.event_type": message_type,
    }
