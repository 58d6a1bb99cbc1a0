"""The FastAPI application every service is built from: health, readiness, metrics, errors."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.asyncapi import document
from shared.db import broken_rule, is_retry_later, violated_constraint
from shared.logging import configure_logging
from shared.methods import answer_allowed_methods
from shared.runtime import Runtime
from shared.settings import ServiceSettings
from shared.tracing import configure_tracing
from shared.wiring import Wiring

log = structlog.get_logger(__name__)
CORRELATION_HEADER = "X-Correlation-ID"
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_service_app(
    *,
    title: str,
    settings: ServiceSettings,
    wiring: Callable[[], Wiring],
    routers: Sequence[APIRouter],
    consume: bool = True,
    resources: Callable[[FastAPI], AbstractAsyncContextManager[object]] | None = None,
) -> FastAPI:
    """A service: its routers, plus a lifespan that runs the database, brokers and consumers.

    `resources(app)`, if given, is entered once the runtime runs and left before it stops
    (HTTP clients to other services, for instance).
    """
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing(
        settings.service_name,
        settings.otel_exporter,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, wiring(), consume=consume)
        await runtime.start()
        app.state.runtime = runtime
        # Everything built so far lives as long as the process: keep the collector off it, and
        # let the young generation grow before a collection (most request garbage is freed by
        # reference counting; the frequent default pauses cost CPU for nothing).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            async with resources(app) if resources else nullcontext():
                yield
        finally:
            await runtime.stop()

    # FastAPI's own OpenTelemetry: a SERVER span per request, named by its route and continuing
    # the caller's `traceparent`, made where FastAPI routes the request anyway (the instrumentor
    # package matched every route a second time, and cost about 0.2 ms a request even for spans
    # nobody records). Metrics are Prometheus's (/metrics), logs structlog's.
    telemetry: TelemetryConfig = {
        "metrics": False,
        "logs": False,
        "operation_spans": False,  # dependencies, endpoint, serialisation: noise in each trace
        "exclude": _untraced,
    }
    app = FastAPI(title=title, lifespan=lifespan, telemetry=telemetry)
    app.state.settings = settings
    for router in routers:
        app.include_router(router)
    app.include_router(_operations_router())

    @app.get("/asyncapi.json", tags=["operations"])
    async def asyncapi() -> JSONResponse:
        """This service's AsyncAPI 3.0 document: what it sends and receives, from its wiring()."""
        return JSONResponse(document(wiring()))

    _install_error_handlers(app)
    answer_allowed_methods(app)
    app.add_middleware(CorrelationMiddleware)
    return app


def _untraced(scope) -> bool:
    """Probes and scrapes arrive every few seconds and say nothing about an order: no spans."""
    return scope.get("path") in UNTRACED_PATHS


class Readiness(BaseModel):
    """Whether this instance can serve, and what each dependency answered when asked."""

    ready: bool
    checks: dict[str, str] = Field(
        description="'ok', or the error, for the database, each broker and each consumer"
    )


NOT_READY = "A dependency did not answer or a consumer is stuck: route traffic elsewhere"


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": NOT_READY}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """The database and both brokers answer and every consumer works; 503 otherwise."""
        checks = await request.app.state.runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics of this process."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


# What a caller hears for each kind of broken rule (shared.db.broken_rule); never the database's
# own words, which name tables and values.
REFUSED = {
    "conflict": ({"detail": "conflicts with stored data"}, 409),
    "invalid": ({"detail": "a value is missing or not allowed"}, 422),
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(InvalidRequestError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(asyncpg.PostgresError)  # the services run on asyncpg (shared.db)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(OSError)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if rule := broken_rule(exc):
            # The request broke a rule the database keeps: the caller's to fix, not a fault of ours.
            constraint = violated_constraint(exc)
            log.info("refused by a constraint", path=request.url.path, constraint=constraint)
            return JSONResponse(*REFUSED[rule])
        if is_retry_later(exc):
            # The caller may retry later: nothing was committed.
            log.warning("dependency unavailable", path=request.url.path, error=repr(exc))
            return JSONResponse({"detail": "a dependency is unavailable, retry later"}, 503)
        # Anything else is a bug of ours, not the caller's: say so, and keep the details in the log.
        log.error("unexpected database error", path=request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)


class CorrelationMiddleware:
    """Gives each request a correlation id (the caller's, else a new one) and echoes it back.

    Plain ASGI rather than `@app.middleware("http")`: that wrapper costs a task and a stream
    per request, a measurable share of a small service's CPU.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode(), b"")
        correlation_id = given.decode("latin-1")[:200] or str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = (
            correlation_id  # request.state.correlation_id
        )
        echoed = (CORRELATION_HEADER.lower().encode(), correlation_id.encode("latin-1"))

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            await self.app(scope, receive, send_with_id)


def lazy_app(create_app: Callable[[], FastAPI]) -> Callable[[str], FastAPI]:
    """A module `__getattr__` that builds `app` on first access: `uvicorn users.app:app` works,
    and importing the module (tests, tools) builds nothing."""

    def __getattr__(name: str) -> FastAPI:
        if name == "app":
            return create_app()
        raise AttributeError(name)

    return __getattr__
