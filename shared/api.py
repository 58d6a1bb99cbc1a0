"""What every service's HTTP layer shares: the database, the request's correlation id, pages,
the error answers every route documents, and the text a request may carry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.db import Database

T = TypeVar("T")


def database(request: Request) -> Database:
    """The service's database, for a route to open its transaction in its body.

    Not a dependency: FastAPI runs dependencies before it validates the path, query and body, so
    a connection taken in one would make bad input wait for the database, and answer 503 instead
    of 422 while it is down. `async with database(request).transaction() as conn:` in the body
    commits before the response is sent, so a 2xx means the change is stored;
    `database(request).autocommit()` serves a request answered by one query.
    """
    return request.app.state.runtime.database


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


# Refused in any text a request carries: C0 and C1 control characters (Postgres refuses NUL, the
# others corrupt logs and terminals). Lone surrogates are refused too, before any pattern is
# tried: they are not Unicode text, and no regex engine a client's validator uses can name them.
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
# Unicode's White_Space characters that are not controls: what str.strip() takes off a name.
_BLANKS = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_UNICODE = "Unicode text without control characters or lone surrogates"


def visible_text(max_length: int) -> Any:
    """Free text such as a name: at least one visible character, no controls; leading and trailing
    blanks are not part of it."""
    shape = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_BLANKS}][^{_CONTROLS}]*$"
    described = f"{_UNICODE}, at least one not blank; blanks at either end are dropped"
    field = Field(min_length=1, max_length=max_length, pattern=shape, description=described)
    return Annotated[str, field, AfterValidator(str.strip)]


def token(max_length: int) -> Any:
    """A code such as a SKU: one or more characters, none of them blank or a control."""
    shape = f"^[^{_CONTROLS}{_BLANKS}]+$"
    described = f"{_UNICODE}, and without blanks"
    return Annotated[
        str, Field(min_length=1, max_length=max_length, pattern=shape, description=described)
    ]


class Problem(BaseModel):
    """An error answer: what went wrong in words, or (invalid input) one entry per problem."""

    detail: str | list[dict[str, Any]]


MALFORMED = "The body is not JSON"
UNAVAILABLE = "The database or another service is unavailable: nothing was changed, retry later"


def errors(own: Mapping[int, str] | None = None, *, body: bool = False) -> dict[int | str, Any]:
    """A route's error answers for its OpenAPI `responses`: its own (`{404: "No such user"}`),
    503 (every route needs the database) and, for a route that reads a JSON body, 400."""
    described = {503: UNAVAILABLE} | ({400: MALFORMED} if body else {}) | dict(own or {})
    return {code: {"model": Problem, "description": why} for code, why in sorted(described.items())}


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
