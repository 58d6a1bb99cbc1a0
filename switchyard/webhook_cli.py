"""`switchyard webhook ...`: act as the payment provider and send signed events to payments."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import typer
from rich.console import Console

from shared.webhooks import DEVELOPMENT_SECRET, InvalidWebhookSecret
from switchyard.webhook_sender import (
    DEFAULT_URL,
    TIMEOUT_SECONDS,
    EventType,
    build_event,
    send_event_sync,
    signing_secret,
)

DEFAULT_ORDERS_URL = "http://127.0.0.1:8002"

webhook_app = typer.Typer(help="Sign and send PSP webhook events.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def order_total(orders_url: str, order_id: str) -> tuple[int, str]:
    """The order's total and currency from the orders API, so a plain `send` pays it exactly."""
    response = httpx.get(f"{orders_url}/api/v1/orders/{order_id}", timeout=TIMEOUT_SECONDS)
    response.raise_for_status()
    order = response.json()
    return order["total_cents"], order["currency"]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)


@webhook_app.command()
def send(
    type: Annotated[EventType, typer.Option("--type", help="PSP event type.")],
    order: Annotated[str, typer.Option("--order", help="Id of the order the payment is for.")],
    amount: Annotated[
        int | None,
        typer.Option(min=0, help="Amount in cents. Default: the order's total, asked of orders."),
    ] = None,
    currency: Annotated[
        str | None, typer.Option(help="ISO 4217 code. Default: the order's currency, else EUR.")
    ] = None,
    provider_payment_id: Annotated[
        str | None, typer.Option(help="The PSP's payment id. Default: a new random one.")
    ] = None,
    failure_reason: Annotated[
        str | None, typer.Option(help="Why the payment failed (for payment.failed).")
    ] = None,
    url: Annotated[str, typer.Option(help="The payments webhook endpoint.")] = DEFAULT_URL,
    orders_url: Annotated[
        str, typer.Option(help="The orders service, asked for the total when --amount is absent.")
    ] = DEFAULT_ORDERS_URL,
    secret: Annotated[
        str | None,
        typer.Option(
            help="Signing secret whsec_... Default: the first of $PSP_WEBHOOK_SECRET "
            "(environment or .env), else the development secret.",
            show_default=False,
        ),
    ] = None,
    msg_id: Annotated[
        str | None, typer.Option("--id", help="webhook-id. Default: a new one; reuse to replay.")
    ] = None,
) -> None:
    """Sign one PSP event and POST it to payments; exits non-zero unless it is accepted."""
    if amount is None:
        try:
            amount, order_currency = order_total(orders_url, order)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise _fail(
                f"no --amount given and the order total could not be read from {orders_url} "
                f"({exc}). Pass --amount N (in cents)."
            ) from None
        currency = currency or order_currency
    event = build_event(
        type,
        order,
        amount,
        currency or "EUR",
        provider_payment_id=provider_payment_id,
        failure_reason=failure_reason,
    )
    key = signing_secret(secret)
    try:
        response = send_event_sync(url, key, event, msg_id=msg_id)
    except InvalidWebhookSecret as exc:
        raise _fail(str(exc)) from None
    except httpx.HTTPError as exc:
        # Some httpx errors (timeouts) have an empty message; the class name still says what.
        reason = str(exc) or type(exc).__name__
        raise _fail(f"could not reach {url}: {reason}. Is the stack up (`make up`)?") from None
    _report(response, development=key == DEVELOPMENT_SECRET)
    if response.is_error:
        raise _fail(f"payments answered {response.status_code}; the event was not accepted.")


def _report(response: httpx.Response, *, development: bool) -> None:
    request = response.request
    colour = "red" if response.is_error else "green"
    out.print(
        f"POST {request.url} [dim]{request.headers['webhook-id']}[/dim]"
        + (" [dim](development secret)[/dim]" if development else ""),
        highlight=False,
    )
    out.print(f"[{colour}]{response.status_code} {response.reason_phrase}[/{colour}]")
    try:
        out.print_json(data=response.json())
    except json.JSONDecodeError:
        if response.text:
            out.print(response.text, highlight=False, markup=False)
