"""The FastAPI application every service is built from: health, readiness, metrics, errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.logging import configure_logging
from shared.runtime import Runtime, Wiring
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)
CORRELATION_HEADER = "X-Correlation-ID"


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, wiring(), consume=consume)
        await runtime.start()
        app.state.runtime = runtime
        try:
            async with resources(app) if resources else nullcontext():
                yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.settings = settings
    for router in routers:
        app.include_router(router)
    app.include_router(_operations_router())
    _install_error_handlers(app)
    _install_correlation(app)
    return app


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """The database and both brokers answer; 503 otherwise."""
        checks = await request.app.state.runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics of this process."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _unavailable(exc: Exception) -> bool:
    """Connection-level trouble (server down, connection cut, pool exhausted, too slow)."""
    if isinstance(exc, OSError | PoolTimeout | InterfaceError | OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = getattr(exc.orig, "__cause__", None) or exc.orig
        return isinstance(
            orig, OSError | asyncpg.PostgresConnectionError | asyncpg.QueryCanceledError
        )
    return False


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if _unavailable(exc):
            # The caller may retry later: nothing was committed.
            log.warning("dependency unavailable", path=request.url.path, error=repr(exc))
            return JSONResponse({"detail": "a dependency is unavailable, retry later"}, 503)
        # Anything else is a bug of ours, not the caller's: say so, and keep the details in the log.
        log.error("unexpected database error", path=request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _install_correlation(app: FastAPI) -> None:
    @app.middleware("http")
    async def correlation(request: Request, call_next):
        correlation_id = request.headers.get(CORRELATION_HEADER) or str(uuid.uuid4())
        request.state.correlation_id = correlation_id
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
        response.headers[CORRELATION_HEADER] = correlation_id
        return response
