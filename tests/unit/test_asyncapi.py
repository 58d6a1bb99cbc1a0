"""The AsyncAPI documents: generated from wiring() alone, committed as generated, served as committed.

The AsyncAPI parser's verdict on the committed files is `tests/contract/test_asyncapi_valid.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from orders.app import create_app as orders_app
from orders.settings import OrdersSettings
from payments.app import create_app as payments_app
from payments.settings import PaymentsSettings
from shared.asyncapi import document
from switchyard.docs import ASYNCAPI, render
from switchyard.topology import SERVICES, wirings
from users.app import create_app as users_app
from users.settings import UsersSettings

pytestmark = pytest.mark.unit

WIRINGS = {w.service: w for w in wirings()}
APPS = {
    "users": lambda: users_app(UsersSettings(_env_file=None, environment="test")),
    "orders": lambda: orders_app(OrdersSettings(_env_file=None, environment="test")),
    "payments": lambda: payments_app(PaymentsSettings(_env_file=None, environment="test")),
}


def committed(service: str) -> dict:
    return json.loads((ASYNCAPI / f"{service}.json").read_text())


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_is_the_one_wiring_gives(service: str):
    path = ASYNCAPI / f"{service}.json"
    assert path.is_file(), f"{path.name} is missing: run `make docs`"
    assert path.read_text() == render(document(WIRINGS[service])), (
        f"contracts/asyncapi/{service}.json drifted from {service}'s wiring(): run `make docs`"
    )


def test_there_is_one_document_per_service_and_no_other():
    assert {p.stem for p in ASYNCAPI.glob("*.json")} == set(SERVICES), "run `make docs`"


@pytest.mark.parametrize("service", SERVICES)
def test_every_produced_type_has_a_send_operation_on_its_channel(service: str):
    doc = document(WIRINGS[service])
    sent = _operations(doc, "send")
    for message in WIRINGS[service].produces:
        assert sent.get(message.TYPE) == message.CHANNEL.name, f"no send of {message.TYPE}"
        payload = doc["components"]["messages"][message.TYPE]["payload"]
        assert payload["properties"]["type"]["const"] == message.TYPE
    assert set(sent) == {m.TYPE for m in WIRINGS[service].produces}


@pytest.mark.parametrize("service", SERVICES)
def test_every_handled_type_has_a_receive_operation_on_its_topic_or_queue(service: str):
    wiring = WIRINGS[service]
    received = _operations(document(wiring), "receive")
    handled = {t: sub.topic for sub in wiring.kafka for t in sub.handlers}
    handled |= {t: sub.queue for sub in wiring.rabbit for t in sub.handlers}
    assert received == handled


def test_each_message_carries_its_brokers_binding():
    for wiring in wirings():
        messages = document(wiring)["components"]["messages"]
        for model in wiring.produces:
            bindings = messages[model.TYPE]["bindings"]
            if model.CHANNEL.broker == "kafka":
                assert model.SUBJECT in bindings["kafka"]["key"]["description"]
            else:  # the routing key and the AMQP `type` property are the message type
                assert model.CHANNEL.routing_key == model.TYPE
                assert bindings["amqp"]["messageType"] == model.TYPE


@pytest.mark.parametrize("service", SERVICES)
async def test_the_service_serves_the_committed_document(service: str):
    # No lifespan: the document needs no database or broker, so none is started.
    transport = httpx.ASGITransport(app=APPS[service]())
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}.test") as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    assert response.json() == committed(service)


def _operations(doc: dict, action: str) -> dict[str, str]:
    """Message type -> channel address, for every operation of one action."""
    found = {}
    for operation in doc["operations"].values():
        if operation["action"] != action:
            continue
        channel = doc["channels"][Path(operation["channel"]["$ref"]).name]
        for ref in operation["messages"]:
            found[Path(ref["$ref"]).name] = channel["address"]
    return found
