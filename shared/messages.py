"""How a service declares the messages it produces and reads: one base for each side."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from shared.channels import Channel
from shared.envelope import Envelope, new_envelope


class Produced(BaseModel):
    """A message a service owes: its payload model is the contract it offers.

    A service's base sets SOURCE and SUBJECT (the payload field that is the envelope's subject,
    and so the Kafka record key); each message sets its TYPE and the CHANNEL it travels on.
    """

    SOURCE: ClassVar[str]
    SUBJECT: ClassVar[str]
    TYPE: ClassVar[str]
    CHANNEL: ClassVar[Channel]

    def envelope(
        self,
        *,
        caused_by: Envelope | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        """This payload in its envelope; one caused by a message continues its correlation.

        `causation_id` names a cause that is not a message (a webhook's id).
        """
        data = self.model_dump(mode="json")
        envelope = new_envelope(
            type=self.TYPE,
            source=self.SOURCE,
            subject=data[self.SUBJECT],
            data=data,
            caused_by=caused_by,
            correlation_id=correlation_id,
        )
        if causation_id is not None and caused_by is None:
            envelope = envelope.model_copy(update={"causationid": causation_id})
        return envelope


class Reads(BaseModel):
    """A consumer's own minimal view of a message it reads: fields it does not need are ignored,
    so a producer may add fields without breaking it."""

    model_config = ConfigDict(extra="ignore")
