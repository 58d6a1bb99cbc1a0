"""What users publishes (its payload models and event builders) and its own view of what it reads."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from shared.channels import Channel
from shared.envelope import Envelope, new_envelope

SOURCE = "switchyard/users"
USERS_EVENTS = Channel.kafka("users.events")
ORDERS_EVENTS_TOPIC = "orders.events"


# Produced: each payload model is the contract users offers on `users.events` (key: user id).
class UserRegistered(BaseModel):
    user_id: uuid.UUID
    email: str
    name: str


class UserUpdated(BaseModel):
    user_id: uuid.UUID
    email: str
    name: str


class UserDeleted(BaseModel):
    user_id: uuid.UUID


def user_event(type: str, payload: BaseModel, *, correlation_id: str | None = None) -> Envelope:
    """The envelope for a users event; the subject is the user id, so it is the record key too."""
    data = payload.model_dump(mode="json")
    return new_envelope(
        type=type,
        source=SOURCE,
        subject=data["user_id"],
        data=data,
        correlation_id=correlation_id,
    )


# Consumed: users' own minimal view of the orders events it reads; unknown fields are ignored.
class _Reads(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrderPaid(_Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    total_cents: NonNegativeInt


class OrderRefunded(_Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    total_cents: NonNegativeInt
