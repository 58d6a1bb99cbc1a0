"""What users produces (its payload models, the contracts it offers) and its view of what it reads."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import NonNegativeInt

from shared.channels import Channel
from shared.messages import Produced, Reads

USERS_EVENTS = Channel.kafka("users.events")
ORDERS_EVENTS_TOPIC = "orders.events"


class UserMessage(Produced):
    """Every event of users is about one user: its id is the subject and the record key."""

    SOURCE: ClassVar[str] = "switchyard/users"
    SUBJECT: ClassVar[str] = "user_id"
    CHANNEL: ClassVar[Channel] = USERS_EVENTS

    user_id: uuid.UUID


class UserRegistered(UserMessage):
    TYPE = "user.registered"
    email: str
    name: str


class UserUpdated(UserMessage):
    TYPE = "user.updated"
    email: str
    name: str


class UserDeleted(UserMessage):
    TYPE = "user.deleted"


PRODUCED = (UserRegistered, UserUpdated, UserDeleted)


# Consumed: users' own minimal view of the orders events it reads.
class OrderPaid(Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    total_cents: NonNegativeInt


class OrderRefunded(Reads):
    order_id: uuid.UUID
    user_id: uuid.UUID
    total_cents: NonNegativeInt
