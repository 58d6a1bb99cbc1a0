"""Webhooks payments must refuse: a 4xx, never a 500, and nothing stored or changed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from payments.settings import PaymentsSettings
from tests.integration.payments.conftest import OLD_SECRET, SECRET, event_body
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

# The window the service accepts timestamps in (5 minutes, as Standard Webhooks says). The cases
# near its edges stay a whole minute inside or outside it: the header holds whole seconds and the
# request takes its own time, so a case one second past the edge could land inside it.
TOLERANCE = PaymentsSettings.model_fields["webhook_tolerance_seconds"].default
MARGIN = 60
UNKNOWN_SECRET = "whsec_" + base64.b64encode(b"a secret payments does not know!").decode()


def independent_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks written out with the standard library, independent of shared.webhooks."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_the_independent_signer_reproduces_the_published_example():
    # From the Standard Webhooks reference libraries (standard-webhooks/standard-webhooks).
    secret, msg_id, timestamp = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
    )
    signature = independent_signature(secret, msg_id, timestamp, b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(
    body: bytes,
    *,
    secret: str = SECRET,
    msg_id: str | None = None,
    age: int = 0,
    signature: str | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) - age
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature or independent_signature(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def succeeded(order: str, **changes) -> dict:
    event = json.loads(event_body("payment.succeeded", order))
    event["data"].update(changes)
    return event


def signed(value: object) -> Callable[[str], tuple[bytes, dict]]:
    """A case whose body is `value(order_id)` (or `value`), correctly signed."""

    def build(order_id: str) -> tuple[bytes, dict]:
        body = value(order_id) if callable(value) else value
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        return body, headers(body)

    return build


def case(build_headers: Callable[[bytes], dict]) -> Callable[[str], tuple[bytes, dict]]:
    """A valid body sent with the headers `build_headers` makes for it."""

    def build(order_id: str) -> tuple[bytes, dict]:
        body = event_body("payment.succeeded", order_id)
        return body, build_headers(body)

    return build


def _without(data_field: str) -> Callable[[str], dict]:
    def body(order_id: str) -> dict:
        event = succeeded(order_id)
        del event["data"][data_field]
        return event

    return body


def _tampered(body: bytes) -> dict:
    signed_headers = headers(body)
    signed_headers["webhook-signature"] = independent_signature(
        SECRET,
        signed_headers["webhook-id"],
        int(signed_headers["webhook-timestamp"]),
        body.replace(b"4200", b"4300"),  # signed for another amount than the one sent
    )
    return signed_headers


REFUSED = {
    # Authentication: 401, with the reason.
    "unsigned": (case(lambda body: {"content-type": "application/json"}), 401),
    "no signature": (
        case(lambda body: {k: v for k, v in headers(body).items() if k != "webhook-signature"}),
        401,
    ),
    "forged": (case(lambda body: headers(body, secret=UNKNOWN_SECRET)), 401),
    "tampered": (case(_tampered), 401),
    "malformed signature": (case(lambda body: headers(body, signature="v1,not*base64")), 401),
    "timestamp not a number": (
        case(lambda body: headers(body) | {"webhook-timestamp": "1e9"}),
        401,
    ),
    "not UTF-8": (signed(b'{"type": "payment.succeeded", "x": "\xff"}'), 401),
    # Signed, but not an event payments understands: 422 with the pydantic errors.
    "malformed JSON": (signed(b'{"type": "payment.succeeded", "data": {'), 422),
    "not an object": (signed([1, 2, 3]), 422),
    "unknown type": (signed(lambda o: succeeded(o) | {"type": "payment.disputed"}), 422),
    "missing data": (signed(lambda o: {"type": "payment.succeeded", "timestamp": "x"}), 422),
    "missing amount": (signed(_without("amount_cents")), 422),
    "missing order": (signed(_without("order_id")), 422),
    "amount as text": (signed(lambda o: succeeded(o, amount_cents="4200")), 422),
    "negative amount": (signed(lambda o: succeeded(o, amount_cents=-1)), 422),
    "amount past bigint": (signed(lambda o: succeeded(o, amount_cents=2**63)), 422),
    "order not a uuid": (signed(lambda o: succeeded(o, order_id="order-1")), 422),
    "bad currency": (signed(lambda o: succeeded(o, currency="euro")), 422),
    "NUL in provider id": (signed(lambda o: succeeded(o, provider_payment_id="p\x00")), 422),
    "webhook-id too long": (case(lambda body: headers(body, msg_id="m" * 300)), 400),
    # Over the size limit (4096 bytes in these tests): refused before the signature is checked.
    "too large": (signed(lambda o: succeeded(o, note="x" * 5000)), 413),
}


@pytest.mark.parametrize(("build", "expected"), REFUSED.values(), ids=REFUSED.keys())
async def test_refused_webhook_stores_nothing(payments, build, expected):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id))
    before = await payments.counts()
    body, request_headers = build(order_id)

    r = await payments.post_webhook(body, request_headers)

    assert r.status_code == expected, r.text
    assert r.json()["detail"]
    assert await payments.counts() == before
    assert await payments.status(order_id) == "awaiting_confirmation"


OUT_OF_WINDOW = {
    "stale": (TOLERANCE + MARGIN, "too old"),
    "future-dated": (-TOLERANCE - MARGIN, "in the future"),
    "an hour old": (3600, "too old"),
    "an hour ahead": (-3600, "in the future"),
}


@pytest.mark.parametrize(("age", "reason"), OUT_OF_WINDOW.values(), ids=OUT_OF_WINDOW.keys())
async def test_timestamp_outside_the_window_is_refused_for_its_age(payments, age, reason):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id))
    before = await payments.counts()
    body = event_body("payment.succeeded", order_id)

    r = await payments.post_webhook(body, headers(body, age=age))

    assert r.status_code == 401, r.text
    assert reason in r.json()["detail"]  # refused for its timestamp, not for its signature
    assert await payments.counts() == before
    assert await payments.status(order_id) == "awaiting_confirmation"


async def test_chunked_body_over_the_limit_is_refused_while_reading(payments):
    body = json.dumps(succeeded(str(uuid.uuid4()), note="x" * 5000)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    # No Content-Length: the limit has to hold while the body streams in.
    r = await payments.http.post("/webhooks/psp", content=chunks(), headers=headers(body))

    assert r.status_code == 413, r.text
    assert "content-length" not in r.request.headers
    assert (await payments.counts())["webhooks"] == 0


@pytest.mark.parametrize(
    "age", [TOLERANCE - MARGIN, -TOLERANCE + MARGIN], ids=["4 minutes old", "4 minutes ahead"]
)
async def test_timestamps_within_five_minutes_are_accepted(payments, age):
    order_id = str(uuid.uuid4())
    body = event_body("payment.succeeded", order_id)

    r = await payments.post_webhook(body, headers(body, age=age))

    assert r.status_code == 202, r.text


async def test_independently_signed_webhook_is_applied(payments):
    order_id = str(uuid.uuid4())
    await payments.request_payment(order_id)
    await eventually(lambda: payments.payment(order_id))
    body = event_body("payment.succeeded", order_id)

    r = await payments.post_webhook(body, headers(body, msg_id="msg_independent"))

    assert (r.status_code, r.json()["outcome"]) == (200, "applied")
    assert await payments.status(order_id) == "succeeded"


async def test_either_secret_of_a_rotation_is_accepted(payments):
    old = event_body("payment.succeeded", str(uuid.uuid4()))
    mixed = event_body("payment.succeeded", str(uuid.uuid4()))
    mixed_headers = headers(mixed, secret=UNKNOWN_SECRET)
    msg_id, timestamp = mixed_headers["webhook-id"], int(mixed_headers["webhook-timestamp"])
    valid_signature = independent_signature(OLD_SECRET, msg_id, timestamp, mixed)
    # Several space-separated signatures: one valid one is enough.
    mixed_headers["webhook-signature"] += " " + valid_signature

    assert (await payments.post_webhook(old, headers(old, secret=OLD_SECRET))).status_code == 202
    assert (await payments.post_webhook(mixed, mixed_headers)).status_code == 202
    assert (await payments.counts())["webhooks"] == 2
