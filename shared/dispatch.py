"""Routing a consumed envelope to the handler registered for its type, exactly once."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from pydantic import ValidationError

from shared.db import Database, is_unavailable
from shared.envelope import Envelope
from shared.errors import DependencyUnavailable, PermanentError
from shared.handlers import OneStatement, Registered
from shared.inbox import InboxGuard

log = structlog.get_logger(__name__)


class Dispatcher:
    """One consumer's handlers by message type, behind its inbox guard: a `Handler` in the
    guard's transaction, a `OneStatement` as its one statement with the inbox row.

    Types the consumer has no handler for are acknowledged and ignored (a Kafka group commits
    most of them unread, by their `ce_type` header; a record without it comes here). A payload
    the handler's own model rejects can never succeed, so it is parked at once instead of being
    retried.
    """

    def __init__(
        self,
        consumer: str,
        handlers: Mapping[str, Registered],
        database: Database,
        inbox,
    ) -> None:
        self.consumer = consumer
        self.handlers = dict(handlers)
        guard = InboxGuard(database, inbox, consumer)
        self._guarded = {
            type_: guard.wrap_statement(handler.handler)
            if isinstance(handler, OneStatement)
            else guard.wrap(handler)
            for type_, handler in self.handlers.items()
        }

    async def __call__(self, envelope: Envelope) -> None:
        if envelope.type not in self.handlers:
            log.debug("message type ignored", consumer=self.consumer, type=envelope.type)
            return
        structlog.contextvars.bind_contextvars(correlation_id=envelope.correlationid)
        try:
            await self._guarded[envelope.type](envelope)
            log.info("message handled", consumer=self.consumer, type=envelope.type, id=envelope.id)
        except ValidationError as exc:  # nothing of the message's effect was written
            raise PermanentError(f"{envelope.type} payload rejected: {exc}") from exc
        except Exception as exc:
            if is_unavailable(exc):
                raise DependencyUnavailable(f"database unavailable: {exc!r}") from exc
            raise
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
