"""HTTP API of payments (read-only): payments by id and by order."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status

from payments import db
from payments.domain import PaymentStatus
from shared.api import Page, PageDep, Resource, database, errors

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


class PaymentOut(Resource):
    id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    status: PaymentStatus
    amount_cents: int
    currency: str
    provider_payment_id: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


PaymentPage = Page[PaymentOut]


@router.get(
    "/{payment_id}",
    response_model=PaymentOut,
    responses=errors({status.HTTP_404_NOT_FOUND: "No such payment"}),
)
async def get_payment(payment_id: uuid.UUID, request: Request) -> PaymentOut:
    """One payment and its status."""
    async with database(request).autocommit() as conn:
        row = await db.fetch_payment(conn, payment_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"payment {payment_id} not found")
    return PaymentOut.of(row)


@router.get("", response_model=PaymentPage, responses=errors())
async def list_payments(
    request: Request, asked: PageDep, order_id: uuid.UUID | None = None
) -> PaymentPage:
    """Payments, oldest first, a page at a time; `order_id` gives that order's payment."""
    async with database(request).autocommit() as conn:
        rows, total = await db.list_payments(
            conn, order_id=order_id, offset=asked.offset, limit=asked.limit
        )
    return PaymentPage.of([PaymentOut.of(r) for r in rows], total=total, asked=asked)
