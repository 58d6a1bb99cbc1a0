"""What every service's HTTP layer shares: the request's transaction, its correlation id, pages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Generic, Self, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import reading

T = TypeVar("T")


async def session(request: Request):
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    async with request.app.state.runtime.sessions.begin() as s:
        yield s


# scope="function": commit before the response is sent, so a 2xx means the change is stored
# (and a failing commit is answered as an error, not after a success was already sent).
SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


async def read_session(request: Request):
    """A session without a transaction, for a request answered by one query."""
    async with reading(request.app.state.runtime.sessions) as s:
        yield s


ReadSessionDep = Annotated[AsyncSession, Depends(read_session, scope="function")]


def correlation_id(request: Request) -> str | None:
    """The request's correlation id (the caller's X-Correlation-ID, or a new one)."""
    return getattr(request.state, "correlation_id", None)


class Resource(BaseModel):
    """What an endpoint answers with, read from a table row of the same field names."""

    @classmethod
    def of(cls, row) -> Self:
        return cls.model_validate(row._mapping)


class RequestBody(BaseModel):
    """A request body: an unknown field is refused (a typo is an error, not a no-op), and no value
    is coerced into another type ("2" is not a quantity, 2.0 is not cents)."""

    model_config = ConfigDict(extra="forbid", strict=True)


MAX_PAGE_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list was asked for (`?page=&limit=`)."""

    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def page_request(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 20,
) -> PageRequest:
    return PageRequest(page, limit)


PageDep = Annotated[PageRequest, Depends(page_request)]


class Page(BaseModel, Generic[T]):
    """One page of a list, oldest first; a page past the last is empty, `pages` is 0 for none."""

    items: list[T]
    total: int
    page: int
    pages: int

    @classmethod
    def of(cls, items: list[T], *, total: int, asked: PageRequest) -> Page[T]:
        return cls(items=items, total=total, page=asked.page, pages=math.ceil(total / asked.limit))
