"""Orders asks users whether a user exists (`GET /api/v1/users/{id}`), through its real client."""

from __future__ import annotations

import uuid

import pytest
from pact import Pact, match

from orders.domain import UnknownUser
from orders.users_client import UsersClient
from shared.app import CORRELATION_HEADER
from tests.contract.pacts import publish

pytestmark = pytest.mark.contract

USER_ID = "5c8e2f0a-7b1d-4e3c-9a6f-2d4b8c0e1f37"
MISSING_ID = "9e1d3b5f-2a4c-4d6e-8f0a-1b3c5d7e9f20"
CORRELATION_ID = "c0ffee00-0000-4000-8000-000000000002"


# One attempt: a request pact's mock server does not expect would otherwise be retried.
ATTEMPTS = 1


def asking(pact: Pact, description: str, state: str, user_id: str, status: int) -> None:
    # Orders reads nothing but the status code, so the contract pins no body: users may change
    # what it answers with freely, as long as it says 200 or 404.
    (
        pact.upon_receiving(description)
        .given(state, id=user_id)
        .with_request("GET", f"/api/v1/users/{user_id}")
        .with_header(CORRELATION_HEADER, match.str(CORRELATION_ID))
        .will_respond_with(status)
    )


async def test_an_existing_user_is_found():
    pact = Pact("orders", "users")
    asking(pact, "a request for an existing user", "a user exists", USER_ID, 200)
    with pact.serve() as server:
        async with UsersClient(str(server.url), attempts=ATTEMPTS) as users:
            await users.ensure_exists(uuid.UUID(USER_ID), CORRELATION_ID)
    publish(pact)


async def test_a_missing_user_is_unknown():
    pact = Pact("orders", "users")
    asking(pact, "a request for a missing user", "no user exists", MISSING_ID, 404)
    with pact.serve() as server:
        async with UsersClient(str(server.url), attempts=ATTEMPTS) as users:
            with pytest.raises(UnknownUser):
                await users.ensure_exists(uuid.UUID(MISSING_ID), CORRELATION_ID)
    publish(pact)
