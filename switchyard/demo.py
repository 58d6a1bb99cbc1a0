"""`make demo`: one order through the whole stack, step by step, for a newcomer to watch."""

from __future__ import annotations

import asyncio
import json

from rich.console import Console
from rich.panel import Panel

from switchyard.client import StackUrls, SwitchyardClient

console = Console()


def _show(title: str, data) -> None:
    console.print(Panel(json.dumps(data, indent=2, default=str), title=title, expand=False))


async def walkthrough(urls: StackUrls = StackUrls()) -> None:
    client = SwitchyardClient(urls)
    try:
        console.rule("1. users: register a customer (POST /api/v1/users)")
        user = await client.create_user()
        _show("user.registered is on its way to Kafka users.events", user)

        console.rule("2. orders: place an order (POST /api/v1/orders)")
        order = await client.place_order(user["id"])
        _show("order.created -> Kafka; payment.requested -> RabbitMQ payments.commands", order)

        console.rule("3. payments: the command arrived and a payment awaits the provider")
        payments = await client.wait_for(lambda: client.payments_for(order["id"]), bool)
        _show("payment awaiting confirmation", payments[0])

        console.rule("4. the payment provider confirms: a signed webhook (POST /webhooks/psp)")
        response = await client.provider_says("payment.succeeded", order)
        console.print(f"payments answered {response.status_code} {response.text}")

        console.rule("5. orders hears payment.succeeded over RabbitMQ and marks the order paid")
        paid = await client.wait_order(order["id"], "paid")
        _show("order paid; order.paid -> Kafka orders.events", paid)

        console.rule("6. users hears order.paid over Kafka and updates the lifetime stats")
        user = await client.wait_for(
            lambda: client.get_user(user["id"]), lambda u: u["stats"]["orders_paid"] == 1
        )
        _show("user with stats", user)
        console.print("[green]One order, three services, two brokers, nothing lost.[/green]")
    finally:
        await client.aclose()


def main() -> None:
    asyncio.run(walkthrough())
