"""All three services inside the test's process, on real ports, for tests that span the saga."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from orders.app import create_app as create_orders_app
from orders.settings import OrdersSettings
from payments.app import create_app as create_payments_app
from payments.settings import PaymentsSettings
from switchyard.client import StackUrls, SwitchyardClient
from switchyard.topology import wirings, work_queues
from tests.support.servers import serving
from tests.support.services import delete_work_queues, settings_for
from users.app import create_app as create_users_app
from users.settings import UsersSettings

SECRET = "whsec_" + base64.b64encode(b"in-process system webhook secret").decode()


@dataclass(frozen=True)
class System:
    """The running services and a client that drives them as a shop and a PSP would."""

    apps: dict[str, FastAPI]
    client: SwitchyardClient

    async def paid_order(self, **headers: str) -> tuple[dict, dict]:
        """A new user's order, taken through payment to `paid`; (user, order)."""
        client = self.client
        user = await client.create_user()
        body = {
            "user_id": user["id"],
            "currency": "EUR",
            "items": [{"sku": "MUG", "quantity": 2, "unit_price_cents": 900}],
        }
        response = await client.http.post(
            f"{client.urls.orders}/api/v1/orders", json=body, headers=headers
        )
        assert response.status_code == 201, response.text
        order = response.json()
        await client.wait_for(lambda: client.payments_for(order["id"]), bool)
        webhook = await client.provider_says("payment.succeeded", order)
        assert webhook.is_success, webhook.text
        await client.wait_order(order["id"], "paid")
        await client.wait_for(
            lambda: client.get_user(user["id"]), lambda u: u["stats"]["orders_paid"] == 1
        )
        return user, order


@asynccontextmanager
async def running_system(
    stack, database, names: str, *, payments: dict | None = None
) -> AsyncIterator[System]:
    """Users, orders and payments on this test's database copy and broker names, consuming.

    `payments` overrides settings of the payments service.
    """
    apps: dict[str, FastAPI] = {}
    try:
        async with AsyncExitStack() as running:

            async def serve(name: str, app: FastAPI) -> str:
                apps[name] = app
                return await running.enter_async_context(serving(app))

            users = await serve(
                "users",
                create_users_app(settings_for(UsersSettings, "users", stack, database, names)),
            )
            payments_settings = settings_for(
                PaymentsSettings,
                "payments",
                stack,
                database,
                names,
                **{"psp_webhook_secret": SECRET} | (payments or {}),
            )
            payments = await serve("payments", create_payments_app(payments_settings))
            # After payments: orders binds its queue to the exchange payments owns and declares.
            orders_settings = settings_for(
                OrdersSettings, "orders", stack, database, names, users_url=users
            )
            orders = await serve("orders", create_orders_app(orders_settings))
            for app in apps.values():
                await app.state.runtime.wait_assigned()
            client = SwitchyardClient(StackUrls(users, orders, payments), secret=SECRET)
            running.push_async_callback(client.aclose)
            yield System(apps, client)
    finally:
        await delete_work_queues(stack.amqp_url, *(names + q for q in work_queues(wirings())))
