"""structlog set-up: JSON lines in the stack, readable lines in a terminal; both carry context."""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace


def configure_logging(format: str = "console", level: str = "INFO") -> None:
    """Route structlog and stdlib logging through one renderer; contextvars and the span add ids."""
    renderer = (
        structlog.processors.JSONRenderer()
        if format == "json"
        # Plain tracebacks: the rich formatter spends seconds rendering local variables.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared_processors = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.format_exc_info if format == "json" else _keep,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # A line below `level` costs one no-op call: a message handled is an info line, and at
        # WARNING it would otherwise be bound and filtered for every message.
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared_processors,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers before the app is built; send its lines through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # aiokafka and aio-pika narrate every reconnect at INFO; keep their warnings only.
    for noisy in ("aiokafka", "aio_pika", "aiormq", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_trace_ids(logger, method, event_dict):
    """`trace_id` and `span_id` (hex, as tracing backends show them) of the current span, if any."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


def _keep(logger, method, event_dict):
    return event_dict
