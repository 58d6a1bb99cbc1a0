"""Asking the users service whether a user exists, over HTTP with a short timeout and few retries."""

from __future__ import annotations

import uuid
from http import HTTPStatus

import aiohttp
import structlog
from opentelemetry.trace import SpanKind
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from orders.domain import UnknownUser, UsersUnavailable
from shared.app import CORRELATION_HEADER
from shared.lifecycle import Lifecycle
from shared.tracing import trace_headers, tracer

log = structlog.get_logger(__name__)

PATH = "/api/v1/users/{user_id}"
KEEPALIVE_SECONDS = 4.0


class _Retryable(Exception):
    """Users could not be reached or failed on its side: another try may succeed."""


class UsersClient(Lifecycle):
    """The users service's `GET /api/v1/users/{id}`, seen from orders.

    aiohttp rather than httpx: this call is on every order's path, and aiohttp's client costs a
    fraction of the CPU per request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.1,  # seconds before the first retry, doubling up to a second
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._attempts, self._backoff = attempts, backoff

    async def ensure_exists(self, user_id: uuid.UUID, correlation_id: str | None = None) -> None:
        """Return if the user exists; UnknownUser if not; UsersUnavailable if users cannot say."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=1.0),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    status = await self._get(user_id, correlation_id)
        except _Retryable as exc:
            log.warning("users unavailable", user_id=str(user_id), error=str(exc))
            raise UsersUnavailable(str(exc)) from exc
        if status == HTTPStatus.NOT_FOUND:
            raise UnknownUser(user_id)
        if status != HTTPStatus.OK:
            raise UsersUnavailable(f"users answered {status}")

    async def _get(self, user_id: uuid.UUID, correlation_id: str | None) -> int:
        # Only failures that leave the question unanswered are retried: a connection that never
        # opened, or a 5xx. A read timeout is not: users may be slow, and waiting longer is worse.
        with tracer.start_as_current_span(
            f"GET {PATH}", kind=SpanKind.CLIENT, attributes={"url.template": PATH}
        ) as span:
            # A client span per call, and `traceparent` on the request: users continues the trace.
            headers = trace_headers()
            if correlation_id:
                headers[CORRELATION_HEADER] = correlation_id
            url = self._base_url + PATH.format(user_id=user_id)
            try:
                async with self._session().get(url, headers=headers) as response:
                    await response.read()  # the body is not needed, but the connection is reused
                    status = response.status
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
                # Never connected, or the connection broke before any answer (users restarted):
                # a GET changes nothing, so asking again is safe.
                raise _Retryable(f"cannot connect to users: {exc!r}") from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise UsersUnavailable(f"users did not answer: {exc!r}") from exc
            span.set_attribute("http.response.status_code", status)
        if status >= 500:
            raise _Retryable(f"users answered {status}")
        return status

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp requires.
        if self._http is None:
            # Idle connections are dropped before the server's keep-alive ends (75 s in the
            # stack, uvicorn's own default 5 s), so a request never goes out on a connection the
            # server is closing at that moment.
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS)
            self._http = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._http

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
