"""Users' pure rules: request validation, paging, change detection, event envelopes."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from users.api import UserCreate, UserPatch
from users.domain import changed_fields
from users.handlers import ORDERS_EVENT_HANDLERS
from users.messages import OrderPaid, UserDeleted, UserRegistered

pytestmark = pytest.mark.unit


def test_valid_json_strings_pass_the_strict_models():
    body = UserCreate.model_validate_json('{"email": " Ada@Example.COM ", "name": " Ada "}')
    assert (body.email, body.name) == ("Ada@example.com", "Ada")
    assert UserCreate.model_validate({"email": "a@example.com", "name": "Ünïcødé 名"}).name


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"email": "not-an-email", "name": "A"}, "email", "value_error"),
        ({"email": "a@example", "name": "A"}, "email", "value_error"),
        ({"email": "a@example.com", "name": ""}, "name", "string_too_short"),
        # Blank only: refused by the pattern the OpenAPI document states, before any trimming.
        ({"email": "a@example.com", "name": "   "}, "name", "string_pattern_mismatch"),
        ({"email": "a@example.com", "name": "x" * 201}, "name", "string_too_long"),
        ({"email": "a@example.com", "name": "tab\there"}, "name", "string_pattern_mismatch"),
        ({"email": "a@example.com", "name": "nul\x00"}, "name", "string_pattern_mismatch"),
        ({"email": "a@example.com", "name": 7}, "name", "string_type"),
        ({"email": "a@example.com", "name": b"bytes"}, "name", "string_type"),
        ({"email": "a@example.com"}, "name", "missing"),
        ({"email": "a@example.com", "name": "A", "role": "admin"}, "role", "extra_forbidden"),
    ],
)
def test_invalid_create_bodies_name_the_field(body, field, error):
    with pytest.raises(ValidationError) as raised:
        UserCreate.model_validate(body)
    assert (field, error) in {(e["loc"][0], e["type"]) for e in raised.value.errors()}


def test_the_maximum_length_counts_the_name_as_sent_as_the_document_says():
    assert UserCreate(email="a@example.com", name=f"  {'x' * 196}  ").name == "x" * 196
    with pytest.raises(ValidationError, match="string_too_long"):
        UserCreate(email="a@example.com", name=f"  {'x' * 200}  ")


def test_patch_takes_any_subset_but_refuses_null():
    assert UserPatch.model_validate({}).model_dump(exclude_unset=True) == {}
    assert UserPatch.model_validate({"name": "B"}).model_dump(exclude_unset=True) == {"name": "B"}
    for field in ("name", "email"):
        with pytest.raises(ValidationError):
            UserPatch.model_validate({field: None})


def test_changed_fields_keeps_only_real_changes():
    current = {"email": "a@example.com", "name": "A", "orders_paid": 3}
    assert changed_fields(current, {"name": "A"}) == {}
    assert changed_fields(current, {"name": "B", "email": "a@example.com"}) == {"name": "B"}
    assert changed_fields(current, {"email": "A@example.com"}) == {"email": "A@example.com"}


def test_user_event_is_keyed_and_correlated_by_its_user():
    user_id = uuid.uuid4()
    payload = UserRegistered(user_id=user_id, email="a@example.com", name="A")
    event = payload.envelope(correlation_id="c-1")
    assert event.subject == str(user_id)
    assert event.data == {"user_id": str(user_id), "email": "a@example.com", "name": "A"}
    assert (event.type, event.source, event.correlationid) == (
        "user.registered",
        "switchyard/users",
        "c-1",
    )
    uncorrelated = UserDeleted(user_id=user_id).envelope()
    assert uncorrelated.correlationid == uncorrelated.id  # a new flow starts here


def test_users_reads_only_paid_and_refunded_orders_and_ignores_extra_fields():
    assert set(ORDERS_EVENT_HANDLERS) == {"order.paid", "order.refunded"}
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    paid = OrderPaid.model_validate(
        {"order_id": str(order_id), "user_id": str(user_id), "total_cents": 100, "currency": "EUR"}
    )
    assert (paid.user_id, paid.total_cents) == (user_id, 100)
    with pytest.raises(ValidationError):
        OrderPaid.model_validate(
            {"order_id": str(order_id), "user_id": str(user_id), "total_cents": -1}
        )
