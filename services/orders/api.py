"""HTTP API of orders: turns requests into handler calls and rows into responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from pydantic import AfterValidator, BaseModel, Field

from orders import db, handlers
from orders.currencies import CURRENCIES
from orders.domain import (
    IdempotencyKeyReused,
    Item,
    NotCancellable,
    OrderNotFound,
    UnknownUser,
    UsersUnavailable,
)
from shared.api import (
    Page,
    PageDep,
    RequestBody,
    Resource,
    correlation_id,
    database,
    errors,
    token,
)

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])

MAX_CENTS = 10**12  # per unit; with the quantity cap, any total fits a bigint comfortably


def _iso_4217(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError("not an ISO 4217 currency code (upper case, e.g. EUR)")
    return code


# The codes listed in the document, so a client knows them; refused with a short message.
Currency = Annotated[
    str,
    Field(
        description="ISO 4217 code of a circulating currency, upper case, e.g. EUR",
        json_schema_extra={"enum": sorted(CURRENCIES)},
    ),
    AfterValidator(_iso_4217),
]


Sku = token(64)


class ItemIn(RequestBody):
    sku: Sku
    quantity: int = Field(gt=0, le=10_000)
    unit_price_cents: int = Field(ge=0, le=MAX_CENTS)


class OrderCreate(RequestBody):
    user_id: Annotated[uuid.UUID, Field(strict=False)]  # JSON has no UUID type: a string is one
    currency: Currency
    items: list[ItemIn] = Field(min_length=1, max_length=100)


class LineOut(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderOut(Resource):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    total_cents: int
    currency: str
    items: list[LineOut]
    created_at: datetime
    updated_at: datetime


OrderPage = Page[OrderOut]


IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=255)]


def _missing(order_id: uuid.UUID) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")


MISSING = {status.HTTP_404_NOT_FOUND: "No such order"}
PLACING = {
    status.HTTP_409_CONFLICT: "Idempotency-Key already used with a different request",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Invalid request, or an unknown or deleted user",
    status.HTTP_503_SERVICE_UNAVAILABLE: "The database or the users service is unavailable: "
    "no order was stored, retry later",
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses=errors(PLACING, body=True),
)
async def create_order(
    body: OrderCreate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Place an order; the same Idempotency-Key and body give the same order again."""
    items = [Item(i.sku, i.quantity, i.unit_price_cents) for i in body.items]
    try:
        row, replayed = await handlers.place_order(
            database(request),
            request.app.state.users,
            user_id=body.user_id,
            currency=body.currency,
            items=items,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id(request),
        )
    except UnknownUser as exc:
        raise HTTPException(422, f"unknown user {body.user_id}") from exc
    except UsersUnavailable as exc:
        raise HTTPException(503, "the users service is unavailable, retry later") from exc
    except IdempotencyKeyReused as exc:
        raise HTTPException(409, "Idempotency-Key already used with a different request") from exc
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    # Built after the commit (place_order commits before it returns): should it fail, a retry with
    # the same Idempotency-Key answers the order stored.
    return OrderOut.of(row)


@router.get("/{order_id}", response_model=OrderOut, responses=errors(MISSING))
async def get_order(order_id: uuid.UUID, request: Request) -> OrderOut:
    """One order."""
    async with database(request).autocommit() as conn:
        row = await db.fetch_order(conn, order_id)
    if row is None:
        raise _missing(order_id)
    return OrderOut.of(row)


@router.get("", response_model=OrderPage, responses=errors())
async def list_orders(
    request: Request, asked: PageDep, user_id: uuid.UUID | None = None
) -> OrderPage:
    """Orders, oldest first, of one user when `user_id` is given, a page at a time."""
    async with database(request).autocommit() as conn:
        rows, total = await db.list_orders(conn, user_id, offset=asked.offset, limit=asked.limit)
    return OrderPage.of([OrderOut.of(r) for r in rows], total=total, asked=asked)


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    responses=errors(
        MISSING | {status.HTTP_409_CONFLICT: "The order is no longer pending_payment"}
    ),
)
async def cancel_order(order_id: uuid.UUID, request: Request) -> OrderOut:
    """Cancel an order still waiting for its payment; 409 once it has moved on."""
    try:
        async with database(request).transaction() as conn:
            row = await handlers.cancel_order(
                conn, order_id, correlation_id=correlation_id(request)
            )
            # Built before the commit: an answer that cannot be built leaves nothing changed.
            cancelled = OrderOut.of(row)
    except OrderNotFound as exc:
        raise _missing(order_id) from exc
    except NotCancellable as exc:
        raise HTTPException(
            409, f"order is {exc.args[0]}, only pending_payment can be cancelled"
        ) from exc
    return cancelled
