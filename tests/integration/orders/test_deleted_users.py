"""A user deleted in the users service loses their unpaid orders, and nobody else does."""

from __future__ import annotations

import pytest

from tests.integration.orders.conftest import new_user

pytestmark = pytest.mark.integration


async def test_user_deleted_cancels_only_that_users_pending_orders(orders, users):
    leaving, staying = await new_user(users), await new_user(users)
    open_order = await orders.place(leaving)
    paid_order = await orders.place(leaving)
    others_order = await orders.place(staying)
    await orders.payment_event("payment.succeeded", paid_order["id"])
    await orders.reaches(paid_order["id"], "paid")

    # The real users service publishes user.deleted on Kafka; orders hears it from there.
    r = await users.delete(f"/api/v1/users/{leaving}", headers={"X-Correlation-ID": "corr-bye"})
    assert r.status_code == 204, r.text
    await orders.reaches(open_order["id"], "cancelled")

    # One transaction cancelled all of the user's open orders: the rest is final now.
    assert await orders.status(paid_order["id"]) == "paid"
    assert await orders.status(others_order["id"]) == "pending_payment"
    cancelled = (await orders.outbox(open_order["id"]))[-1].payload
    assert cancelled["type"] == "order.cancelled"
    assert cancelled["data"] == {
        "order_id": open_order["id"],
        "user_id": leaving,
        "reason": "user_deleted",
    }
    assert cancelled["correlationid"] == "corr-bye"  # followed from users' HTTP request
    assert [o.type for o in await orders.outbox(others_order["id"])] == [
        "order.created",
        "payment.requested",
    ]
