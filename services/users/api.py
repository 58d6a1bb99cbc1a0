"""HTTP API of users: turns requests into handler calls and rows into responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, EmailStr, Field

from shared.api import (
    Page,
    PageDep,
    RequestBody,
    correlation_id,
    database,
    errors,
    visible_text,
)
from users import db, handlers
from users.domain import EmailTaken, UserNotFound

router = APIRouter(prefix="/api/v1/users", tags=["users"])


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


# The email validator refuses special-use domains (.test, .localhost, ...): nobody receives mail
# there. The document says so, in a pattern a client's own validator can check.
_RESERVED = "|".join(_any_case(name) for name in sorted(SPECIAL_USE_DOMAIN_NAMES))
Email = Annotated[
    EmailStr,
    Field(
        max_length=254,
        description="An address in a domain that receives mail (not a special-use name such as .test)",
        json_schema_extra={"pattern": rf"^(?!.*[@.](?:{_RESERVED})$)"},
    ),
]
Name = visible_text(200)


class UserCreate(RequestBody):
    email: Email
    name: Name


class UserPatch(RequestBody):
    # Omitted means unchanged; null is refused, as a user always has both.
    email: Email = None
    name: Name = None


class Stats(BaseModel):
    orders_paid: int
    lifetime_spent_cents: int


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    stats: Stats
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row) -> UserOut:
        stats = Stats(orders_paid=row.orders_paid, lifetime_spent_cents=row.lifetime_spent_cents)
        return cls(
            id=row.id,
            email=row.email,
            name=row.name,
            stats=stats,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


UserPage = Page[UserOut]


def _conflict(exc: EmailTaken) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, f"email already registered: {exc.args[0]}")


def _missing(user_id: uuid.UUID) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")


CONFLICT = {status.HTTP_409_CONFLICT: "Email already taken"}
MISSING = {status.HTTP_404_NOT_FOUND: "No such user"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=errors(CONFLICT, body=True),
)
async def create_user(body: UserCreate, request: Request, response: Response) -> UserOut:
    """Register a user; 409 if the email is taken (in any letter case)."""
    try:
        async with database(request).transaction() as conn:
            row = await handlers.register_user(
                conn, email=body.email, name=body.name, correlation_id=correlation_id(request)
            )
            # Built before the commit: an answer that cannot be built leaves nothing stored.
            created = UserOut.of(row)
    except EmailTaken as exc:
        raise _conflict(exc) from exc
    response.headers["Location"] = f"{router.prefix}/{created.id}"
    return created


@router.get("/{user_id}", response_model=UserOut, responses=errors(MISSING))
async def get_user(user_id: uuid.UUID, request: Request) -> UserOut:
    """One user with their lifetime order stats."""
    async with database(request).autocommit() as conn:
        row = await db.fetch_user(conn, user_id)
    if row is None:
        raise _missing(user_id)
    return UserOut.of(row)


@router.get("", response_model=UserPage, responses=errors())
async def list_users(request: Request, asked: PageDep) -> UserPage:
    """Users, oldest first, a page at a time; a page past the last is empty."""
    async with database(request).autocommit() as conn:
        rows, total = await db.list_users(conn, offset=asked.offset, limit=asked.limit)
    return UserPage.of([UserOut.of(r) for r in rows], total=total, asked=asked)


@router.patch("/{user_id}", response_model=UserOut, responses=errors(MISSING | CONFLICT, body=True))
async def patch_user(user_id: uuid.UUID, body: UserPatch, request: Request) -> UserOut:
    """Change email and/or name; 409 if the new email is taken; nothing to change emits no event."""
    changes = body.model_dump(exclude_unset=True)
    try:
        async with database(request).transaction() as conn:
            row = await handlers.update_user(
                conn, user_id, changes, correlation_id=correlation_id(request)
            )
            updated = UserOut.of(row)  # before the commit, as in create_user
    except UserNotFound as exc:
        raise _missing(user_id) from exc
    except EmailTaken as exc:
        raise _conflict(exc) from exc
    return updated


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(MISSING))
async def delete_user(user_id: uuid.UUID, request: Request) -> Response:
    """Delete a user; afterwards GET answers 404."""
    try:
        async with database(request).transaction() as conn:
            await handlers.delete_user(conn, user_id, correlation_id=correlation_id(request))
    except UserNotFound as exc:
        raise _missing(user_id) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
