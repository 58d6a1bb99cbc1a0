"""Standard Webhooks signatures (standardwebhooks.com): sign a body, verify its raw bytes."""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
CONTENT_TYPE = "application/json"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = timedelta(minutes=5)

# The local stack's documented secret (also in .env.example). It is public, so a service
# outside development refuses to start with it: see is_development_secret().
DEVELOPMENT_SECRET = "whsec_a/mzxlzrii2p0I/51SF7dLvJL++ysrEV"


class InvalidWebhook(Exception):
    """The request is not a webhook we can trust; `reason` says why and is safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidWebhookSecret(ValueError):
    """A configured secret is not `whsec_<base64>`: a configuration error, not a bad request."""


def parse_secrets(value: str) -> list[str]:
    """Split a space-separated secrets setting (several during a rotation) into secrets."""
    return value.split()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret; the message never echoes the secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(
            f"malformed webhook secret: it must start with {SECRET_PREFIX!r}"
        )
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # validate=True: plain b64decode silently drops stray characters, hiding typos.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise InvalidWebhookSecret("malformed webhook secret: not base64 after 'whsec_'") from None
    if not key:
        raise InvalidWebhookSecret("malformed webhook secret: empty key")
    return key


def is_development_secret(secret: str) -> bool:
    """True if `secret` (one secret or a space-separated list) includes DEVELOPMENT_SECRET."""
    development_key = secret_key(DEVELOPMENT_SECRET)
    for candidate in parse_secrets(secret):
        try:
            if hmac.compare_digest(secret_key(candidate), development_key):
                return True
        except InvalidWebhookSecret:
            continue
    return False


def _unix_seconds(timestamp: datetime | int) -> int:
    if isinstance(timestamp, int):
        return timestamp
    if timestamp.tzinfo is None:  # naive means UTC here, as in the standardwebhooks library
        timestamp = timestamp.replace(tzinfo=UTC)
    return int(timestamp.timestamp())


def sign(secret: str, msg_id: str, timestamp: datetime | int, body: bytes) -> str:
    """The `webhook-signature` value `v1,<base64>` for this id, Unix timestamp and UTF-8 body."""
    # The library takes an aware UTC datetime and the body as text; both round-trip exactly.
    when = datetime.fromtimestamp(_unix_seconds(timestamp), UTC)
    return Webhook(secret_key(secret)).sign(msg_id=msg_id, timestamp=when, data=body.decode())


def signed_headers(
    secret: str,
    body: bytes,
    *,
    msg_id: str | None = None,
    timestamp: datetime | int | None = None,
) -> dict[str, str]:
    """Headers that make `body` a signed webhook; a fresh id and the current time by default."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    seconds = _unix_seconds(timestamp if timestamp is not None else datetime.now(UTC))
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(seconds),
        SIGNATURE_HEADER: sign(secret, msg_id, seconds, body),
        "content-type": CONTENT_TYPE,
    }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookVerifier:
    """Checks webhooks against one or more secrets: any secret matching any signature is valid."""

    def __init__(
        self,
        secrets: str | Sequence[str],
        tolerance: timedelta = DEFAULT_TOLERANCE,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if isinstance(secrets, str):  # a settings value: space-separated during a rotation
            secrets = parse_secrets(secrets)
        # Decoded up front so a bad secret stops the service at startup, not at the first webhook.
        self._webhooks = [Webhook(secret_key(secret)) for secret in secrets]
        if not self._webhooks:
            raise InvalidWebhookSecret("no webhook secret configured")
        self._tolerance = tolerance.total_seconds()
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Pass if `body`, the raw request bytes, is signed and fresh; else raise InvalidWebhook."""
        headers = {name.lower(): value for name, value in headers.items()}
        msg_id = _required(headers, ID_HEADER)
        seconds = self._fresh_timestamp(_required(headers, TIMESTAMP_HEADER))
        signatures = _v1_signatures(_required(headers, SIGNATURE_HEADER))
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise InvalidWebhook("body is not UTF-8") from None
        when = datetime.fromtimestamp(seconds, UTC)
        # Only the library's signing is used: its verify() fixes the tolerance at 5 minutes,
        # knows one secret, and crashes on a malformed signature entry instead of rejecting it.
        for webhook in self._webhooks:
            expected = base64.b64decode(webhook.sign(msg_id, when, text).removeprefix("v1,"))
            if any(hmac.compare_digest(expected, signature) for signature in signatures):
                return
        raise InvalidWebhook("signature does not match")

    def _fresh_timestamp(self, value: str) -> int:
        # Digits only: float() would accept "1e9", "nan" and "inf".
        if not (value.isascii() and value.isdigit()):
            raise InvalidWebhook(f"malformed {TIMESTAMP_HEADER} header: not Unix seconds")
        seconds = int(value)
        age = self._clock().timestamp() - seconds
        if age > self._tolerance:
            raise InvalidWebhook(f"timestamp too old (more than {self._tolerance:g} s in the past)")
        if -age > self._tolerance:
            raise InvalidWebhook(f"timestamp in the future (more than {self._tolerance:g} s ahead)")
        return seconds


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise InvalidWebhook(f"missing {name} header")
    return value


def _v1_signatures(header: str) -> list[bytes]:
    """Decoded `v1` signatures; other schemes (such as asymmetric `v1a`) are not ours to check."""
    signatures = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    if not signatures:
        raise InvalidWebhook(f"malformed {SIGNATURE_HEADER} header: no v1 signature")
    return signatures
