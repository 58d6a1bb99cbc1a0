"""The outbox relay's wake-up line: LISTEN on a dedicated connection that comes back if it drops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_KEEPALIVE = 15.0  # a cut TCP connection may never report itself: ping this often
_PING_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 10.0
APPLICATION_NAME = "switchyard-outbox-listener"


class NotifyListener:
    """Calls `on_notify` for each NOTIFY on `channel`, and once after every (re)connect."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[], None],
        *,
        reconnect_interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._reconnect_interval = reconnect_interval

    async def run(self) -> None:
        """Listen until cancelled; the relay's polling covers the moments without a connection."""
        while True:
            try:
                await self._listen_until_lost()
            except Exception as exc:
                log.warning("outbox.listener_lost", channel=self._channel, error=repr(exc))
            await asyncio.sleep(self._reconnect_interval)

    async def _listen_until_lost(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=_CONNECT_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, lambda *_: self._on_notify())
            self._on_notify()  # notifications sent while nobody listened are gone: look now
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), _KEEPALIVE)
                    return
                await asyncio.wait_for(conn.execute("SELECT 1"), _PING_TIMEOUT)
        finally:
            conn.terminate()  # close() could wait forever on a dead socket
