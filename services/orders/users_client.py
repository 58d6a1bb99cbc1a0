"""Asking the users service whether a user exists, over HTTP with a short timeout and few retries."""

from __future__ import annotations

import uuid
from types import TracebackType

import httpx
import structlog
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from orders.domain import UnknownUser, UsersUnavailable
from shared.app import CORRELATION_HEADER

log = structlog.get_logger(__name__)


class _Retryable(Exception):
    """Users could not be reached or failed on its side: another try may succeed."""


class UsersClient:
    """The users service's `GET /api/v1/users/{id}`, seen from orders."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.1,  # seconds before the first retry, doubling up to a second
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        # A client span per call, and `traceparent` on the request: users continues the trace.
        HTTPXClientInstrumentor.instrument_client(self._http)
        self._attempts, self._backoff = attempts, backoff

    async def ensure_exists(self, user_id: uuid.UUID, correlation_id: str | None = None) -> None:
        """Return if the user exists; UnknownUser if not; UsersUnavailable if users cannot say."""
        headers = {CORRELATION_HEADER: correlation_id} if correlation_id else {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=1.0),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._get(f"/api/v1/users/{user_id}", headers)
        except _Retryable as exc:
            log.warning("users unavailable", user_id=str(user_id), error=str(exc))
            raise UsersUnavailable(str(exc)) from exc
        if response.status_code == httpx.codes.NOT_FOUND:
            raise UnknownUser(user_id)
        if response.status_code != httpx.codes.OK:
            raise UsersUnavailable(f"users answered {response.status_code}")

    async def _get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        # Only failures that leave the question unanswered are retried: a connection that never
        # opened, or a 5xx. A read timeout is not: users may be slow, and waiting longer is worse.
        try:
            response = await self._http.get(path, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retryable(f"cannot connect to users: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise UsersUnavailable(f"users did not answer: {exc!r}") from exc
        if response.status_code >= 500:
            raise _Retryable(f"users answered {response.status_code}")
        return response

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> UsersClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
