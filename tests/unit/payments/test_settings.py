"""The webhook secret: the public development one only on local stacks, never a malformed one."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from payments.settings import PaymentsSettings
from shared.webhooks import DEVELOPMENT_SECRET

pytestmark = pytest.mark.unit

REAL_SECRET = "whsec_" + base64.b64encode(b"a production secret of 32 bytes!").decode()


def settings(**values) -> PaymentsSettings:
    return PaymentsSettings(_env_file=None, **values)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_local_stacks_default_to_the_development_secret(environment, monkeypatch):
    monkeypatch.delenv("PSP_WEBHOOK_SECRET", raising=False)

    assert settings(environment=environment).psp_webhook_secret.get_secret_value() == (
        DEVELOPMENT_SECRET
    )


@pytest.mark.parametrize(
    "secret",
    ["", "   ", DEVELOPMENT_SECRET, f"{REAL_SECRET} {DEVELOPMENT_SECRET}"],
    ids=["empty", "blank", "development", "development in a rotation"],
)
def test_production_refuses_no_secret_or_the_development_one(secret):
    with pytest.raises(ValidationError, match="PSP_WEBHOOK_SECRET"):
        settings(environment="production", psp_webhook_secret=secret)


def test_production_refuses_when_the_environment_sets_nothing(monkeypatch):
    monkeypatch.delenv("PSP_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="must be set in production"):
        PaymentsSettings(_env_file=None)


def test_production_starts_with_its_own_secrets_read_from_the_environment(monkeypatch):
    other = "whsec_" + base64.b64encode(b"the secret being rotated out....").decode()
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("PSP_WEBHOOK_SECRET", f"{REAL_SECRET} {other}")

    loaded = PaymentsSettings(_env_file=None)

    assert loaded.psp_webhook_secret.get_secret_value() == f"{REAL_SECRET} {other}"
    assert REAL_SECRET not in repr(loaded)


@pytest.mark.parametrize("secret", ["not-a-secret", "whsec_***", "whsec_"])
def test_a_malformed_secret_is_refused_without_echoing_it(secret):
    with pytest.raises(ValidationError) as refused:
        settings(environment="test", psp_webhook_secret=secret)

    assert "malformed webhook secret" in str(refused.value)
    assert secret not in str(refused.value).replace("'whsec_'", "")
