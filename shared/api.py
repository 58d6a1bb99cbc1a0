"""What every service's HTTP layer shares: the request's transaction, its correlation id, pages."""

from __future__ import annotations

import math
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
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


class Page(BaseModel, Generic[T]):
    """One page of a list: `pages` is 0 for an empty list."""

    items: list[T]
    total: int
    page: int
    pages: int

    @classmethod
    def of(cls, items: list[T], *, total: int, page: int, limit: int) -> Page[T]:
        return cls(items=items, total=total, page=page, pages=math.ceil(total / limit))
