"""Standard Webhooks signing and verification, checked against vectors computed without our code."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.webhooks import (
    DEVELOPMENT_SECRET,
    InvalidWebhook,
    InvalidWebhookSecret,
    WebhookVerifier,
    is_development_secret,
    secret_key,
    sign,
    signed_headers,
)

pytestmark = pytest.mark.unit

# The example published with the Standard Webhooks reference libraries: repository
# standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py, test_sign_function.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"switchyard unit test key 32 byte").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key, not ours, 32 bytes!").decode()
BODY = '{"type":"payment.succeeded","data":{"order_id":"o-1","currency":"EUR","note":"€"}}'.encode()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def plain_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The spec's algorithm written out with the standard library only."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verifier(*secrets: str, tolerance: timedelta = timedelta(minutes=5)) -> WebhookVerifier:
    return WebhookVerifier(secrets or [SECRET], tolerance, clock=lambda: NOW)


def headers_at(when: datetime = NOW, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return signed_headers(secret, body, msg_id="msg_unit", timestamp=when)


def test_sign_matches_the_published_spec_example():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_spec_example_verifies_at_its_own_time():
    at_signing = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    WebhookVerifier([SPEC_SECRET], clock=lambda: at_signing).verify(headers, SPEC_BODY)


def test_sign_matches_a_plain_hmac_computation():
    expected = plain_signature(SECRET, "msg_plain", 1700000000, BODY)
    assert sign(SECRET, "msg_plain", 1700000000, BODY) == expected


def test_sign_takes_unix_seconds_or_any_aware_datetime():
    in_utc = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
    in_paris = in_utc.astimezone(timezone(timedelta(hours=1)))
    naive_utc = in_utc.replace(tzinfo=None)
    for when in (in_utc, in_paris, naive_utc):
        assert sign(SPEC_SECRET, SPEC_ID, when, SPEC_BODY) == SPEC_SIGNATURE


def test_signed_headers_carry_id_timestamp_signature_and_content_type():
    headers = headers_at()
    assert headers == {
        "webhook-id": "msg_unit",
        "webhook-timestamp": str(int(NOW.timestamp())),
        "webhook-signature": plain_signature(SECRET, "msg_unit", int(NOW.timestamp()), BODY),
        "content-type": "application/json",
    }


def test_signed_headers_make_a_fresh_id_each_time():
    first, second = signed_headers(SECRET, BODY), signed_headers(SECRET, BODY)
    assert first["webhook-id"].startswith("msg_")
    assert first["webhook-id"] != second["webhook-id"]


def test_valid_webhook_is_accepted():
    verifier().verify(headers_at(), BODY)


def test_fresh_webhook_is_accepted_with_the_real_clock():
    WebhookVerifier([SECRET]).verify(signed_headers(SECRET, BODY), BODY)


def test_header_names_are_case_insensitive():
    headers = {name.title(): value for name, value in headers_at().items()}
    verifier().verify(headers, BODY)


def test_wrong_secret_is_rejected():
    with pytest.raises(InvalidWebhook, match="signature does not match"):
        verifier().verify(headers_at(secret=OTHER_SECRET), BODY)


@pytest.mark.parametrize(
    "tampered",
    [BODY.replace(b"o-1", b"o-2"), BODY + b" ", BODY + b"\n", b""],
    ids=["changed", "trailing-space", "trailing-newline", "empty"],
)
def test_tampered_body_is_rejected(tampered):
    with pytest.raises(InvalidWebhook, match="signature does not match"):
        verifier().verify(headers_at(), tampered)


def test_signature_does_not_transfer_to_another_id():
    headers = headers_at() | {"webhook-id": "msg_replayed"}
    with pytest.raises(InvalidWebhook, match="signature does not match"):
        verifier().verify(headers, BODY)


def test_non_utf8_body_is_rejected():
    with pytest.raises(InvalidWebhook, match="UTF-8"):
        verifier().verify(headers_at(), b"\xff\xfe")


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(header):
    headers = headers_at()
    del headers[header]
    with pytest.raises(InvalidWebhook, match=f"missing {header} header"):
        verifier().verify(headers, BODY)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_blank_header_counts_as_missing(header):
    with pytest.raises(InvalidWebhook, match=f"missing {header} header"):
        verifier().verify(headers_at() | {header: "  "}, BODY)


def test_stale_timestamp_is_rejected():
    with pytest.raises(InvalidWebhook, match="timestamp too old"):
        verifier().verify(headers_at(NOW - timedelta(minutes=5, seconds=1)), BODY)


def test_future_timestamp_is_rejected():
    with pytest.raises(InvalidWebhook, match="timestamp in the future"):
        verifier().verify(headers_at(NOW + timedelta(minutes=5, seconds=1)), BODY)


@pytest.mark.parametrize("offset_seconds", [-300, -299, -1, 0, 1, 299, 300])
def test_timestamp_within_tolerance_is_accepted(offset_seconds):
    verifier().verify(headers_at(NOW + timedelta(seconds=offset_seconds)), BODY)


def test_tolerance_is_configurable():
    headers = headers_at(NOW - timedelta(seconds=61))
    verifier(tolerance=timedelta(minutes=2)).verify(headers, BODY)
    with pytest.raises(InvalidWebhook, match="timestamp too old"):
        verifier(tolerance=timedelta(minutes=1)).verify(headers, BODY)


@pytest.mark.parametrize("value", ["hello", "1e9", "nan", "-5", "1614265330.5", "١٢٣"])
def test_malformed_timestamp_is_rejected(value):
    with pytest.raises(InvalidWebhook, match="malformed webhook-timestamp"):
        verifier().verify(headers_at() | {"webhook-timestamp": value}, BODY)


def test_any_of_several_signatures_may_match():
    valid = headers_at()["webhook-signature"]
    foreign = plain_signature(OTHER_SECRET, "msg_unit", int(NOW.timestamp()), BODY)
    header = " ".join(
        [foreign, "v2," + foreign.removeprefix("v1,"), "v1a,c2lnbmF0dXJl", "junk", valid, foreign]
    )
    verifier().verify(headers_at() | {"webhook-signature": header}, BODY)


def test_several_signatures_none_matching_is_rejected():
    foreign = plain_signature(OTHER_SECRET, "msg_unit", int(NOW.timestamp()), BODY)
    with pytest.raises(InvalidWebhook, match="signature does not match"):
        verifier().verify(headers_at() | {"webhook-signature": f"{foreign} {foreign}"}, BODY)


@pytest.mark.parametrize("signed_with", [SECRET, OTHER_SECRET], ids=["old", "new"])
def test_rotation_accepts_the_old_and_the_new_secret(signed_with):
    verifier(SECRET, OTHER_SECRET).verify(headers_at(secret=signed_with), BODY)


def test_rotation_accepts_a_sender_signing_with_both_secrets():
    old, new = headers_at(secret=SECRET), headers_at(secret=OTHER_SECRET)
    both = f"{old['webhook-signature']} {new['webhook-signature']}"
    verifier(OTHER_SECRET).verify(old | {"webhook-signature": both}, BODY)


def test_verifier_reads_a_space_separated_setting():
    WebhookVerifier(f"{OTHER_SECRET}  {SECRET}", clock=lambda: NOW).verify(headers_at(), BODY)


@pytest.mark.parametrize(
    "header", ["garbage", "v1", "v1,", "v1,not base64!", "v2,c2lnbmF0dXJl", ",c2ln"]
)
def test_malformed_signature_header_is_rejected(header):
    with pytest.raises(InvalidWebhook, match="malformed webhook-signature header"):
        verifier().verify(headers_at() | {"webhook-signature": header}, BODY)


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not*base64", "changeme"]
)
def test_malformed_secret_is_refused_when_the_verifier_is_built(secret):
    with pytest.raises(InvalidWebhookSecret, match="malformed webhook secret"):
        WebhookVerifier([secret])


def test_verifier_without_secrets_is_refused():
    with pytest.raises(InvalidWebhookSecret, match="no webhook secret"):
        WebhookVerifier([])


def test_secret_without_padding_is_accepted():
    padded = "whsec_" + base64.b64encode(b"twenty-five bytes of key!").decode()
    assert padded.endswith("=")
    assert secret_key(padded.rstrip("=")) == b"twenty-five bytes of key!"


def test_development_secret_is_well_formed():
    assert len(secret_key(DEVELOPMENT_SECRET)) == 24


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DEVELOPMENT_SECRET, True),
        (DEVELOPMENT_SECRET.rstrip("="), True),
        (f"{SECRET} {DEVELOPMENT_SECRET}", True),
        (SECRET, False),
        ("", False),
        ("not a secret", False),
    ],
    ids=["itself", "unpadded", "in-a-rotation", "another", "empty", "garbage"],
)
def test_is_development_secret(value, expected):
    assert is_development_secret(value) is expected
