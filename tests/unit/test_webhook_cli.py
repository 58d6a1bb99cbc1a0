"""`switchyard webhook send` end to end against a tiny local PSP endpoint and orders API."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from shared.webhooks import DEVELOPMENT_SECRET, InvalidWebhook, WebhookVerifier
from switchyard.cli import app

pytestmark = pytest.mark.unit

SECRET = "whsec_c3dpdGNoeWFyZCBjbGkgdGVzdCBrZXkgMzIgYnl0ZXM="
ORDERS = {"o-42": {"id": "o-42", "total_cents": 4200, "currency": "USD"}}


class LocalServices(ThreadingHTTPServer):
    """The payments webhook endpoint and the orders read API, as far as the sender needs them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.verifier = WebhookVerifier([DEVELOPMENT_SECRET])
        self.received: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    server: LocalServices

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            self.server.verifier.verify(headers, body)
        except InvalidWebhook as exc:
            return self._answer(400, {"detail": exc.reason})
        self.server.received.append((headers, body))
        self._answer(202, {"status": "accepted"})

    def do_GET(self) -> None:
        order = ORDERS.get(self.path.removeprefix("/api/v1/orders/"))
        self._answer(200, order) if order else self._answer(404, {"detail": "order not found"})

    def _answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def services() -> Iterator[LocalServices]:
    server = LocalServices()
    # A short poll interval: shutdown() waits for it, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No PSP_WEBHOOK_SECRET from the caller's shell and no .env from the repository."""
    monkeypatch.delenv("PSP_WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)


def send(services: LocalServices, options: str):
    """Run `switchyard webhook send <options>` against the local services."""
    command = f"webhook send --url {services.url}/webhooks/psp --orders-url {services.url}"
    return CliRunner().invoke(app, [*command.split(), *options.split()])


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhooks/psp"


def test_send_posts_a_signed_event_and_prints_the_answer(services):
    options = "--type payment.succeeded --order o-1 --amount 1500"
    result = send(services, f"{options} --provider-payment-id psp_9 --id msg_cli_1")
    assert result.exit_code == 0, result.output
    assert "202" in result.output and "accepted" in result.output
    assert "development secret" in result.output
    ((headers, body),) = services.received
    assert headers["webhook-id"] == "msg_cli_1"
    event = json.loads(body)
    assert event["type"] == "payment.succeeded"
    assert event["timestamp"].endswith("Z")
    assert event["data"] == {
        "order_id": "o-1",
        "amount_cents": 1500,
        "currency": "EUR",
        "provider_payment_id": "psp_9",
    }


def test_send_a_failure_with_its_reason(services):
    options = "--type payment.failed --order o-1 --amount 1500"
    result = send(services, f"{options} --currency gbp --failure-reason card_declined")
    assert result.exit_code == 0, result.output
    data = json.loads(services.received[0][1])["data"]
    assert (data["currency"], data["failure_reason"]) == ("GBP", "card_declined")


def test_send_without_amount_pays_the_order_total(services):
    result = send(services, "--type payment.succeeded --order o-42")
    assert result.exit_code == 0, result.output
    data = json.loads(services.received[0][1])["data"]
    assert (data["amount_cents"], data["currency"]) == (4200, "USD")


def test_send_without_amount_for_an_unknown_order_fails_clearly(services):
    result = send(services, "--type payment.succeeded --order o-missing")
    assert result.exit_code == 1
    assert "--amount" in result.output
    assert services.received == []


def test_send_signs_with_the_first_secret_in_the_environment(services, monkeypatch):
    services.verifier = WebhookVerifier([SECRET])
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", f"{SECRET} {DEVELOPMENT_SECRET}")
    result = send(services, "--type payment.refunded --order o-1 --amount 10")
    assert result.exit_code == 0, result.output
    assert "development secret" not in result.output


def test_send_exits_non_zero_when_the_webhook_is_rejected(services):
    result = send(services, f"--type payment.succeeded --order o-1 --amount 10 --secret {SECRET}")
    assert result.exit_code == 1
    assert "400" in result.output and "signature does not match" in result.output
    assert services.received == []


def test_send_exits_non_zero_when_payments_is_unreachable():
    url = closed_port_url()
    args = ["webhook", "send", "--type", "payment.succeeded", "--order", "o-1", "--amount", "10"]
    result = CliRunner().invoke(app, [*args, "--url", url])
    assert result.exit_code == 1
    assert "could not reach" in result.output


def test_send_refuses_a_malformed_secret(services):
    result = send(services, "--type payment.succeeded --order o-1 --amount 10 --secret changeme")
    assert result.exit_code == 1
    assert "malformed webhook secret" in result.output


def test_send_refuses_an_unknown_type(services):
    result = send(services, "--type payment.teleported --order o-1 --amount 10")
    assert result.exit_code == 2
    assert services.received == []


def test_switchyard_lists_the_webhook_group():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "webhook" in result.output
