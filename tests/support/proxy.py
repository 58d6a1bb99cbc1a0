"""A TCP proxy that a test can cut and restore, to put a real server out of reach and back."""

from __future__ import annotations

import asyncio
import contextlib

from yarl import URL


class TcpProxy:
    """Forwards a local port to a target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = True
        self._replies = asyncio.Event()
        self._replies.set()
        self.refused = 0  # connections turned away while cut: proof that a client tried

    @classmethod
    def to(cls, address: str) -> TcpProxy:
        """A proxy for "host:port"."""
        host, _, port = address.rpartition(":")
        return cls(host, int(port))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def carrying(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's: a client of it goes through here."""
        return str(URL(url).with_host(self.host).with_port(self.port))

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """Close every live connection at once and refuse new ones, as if the server went away."""
        self._open = False
        for writer in list(self._writers):
            self._abort(writer)

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._open = True

    def hold_replies(self) -> None:
        """Keep what the server sends from reaching its clients until `release_replies()`: the
        server has done the work, and the client, waiting for the answer, does not know yet."""
        self._replies.clear()

    def release_replies(self) -> None:
        self._replies.set()

    async def stop(self) -> None:
        self.release_replies()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            self.refused += 1
            self._abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._abort(writer)
            return
        if not self._open:  # cut while we were connecting upstream
            self._abort(writer)
            self._abort(up_writer)
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer, self._replies)
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                self._abort(w)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        flowing: asyncio.Event | None = None,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if flowing is not None:
                    await flowing.wait()
                writer.write(data)
                await writer.drain()
        # One side finished: end the other, so neither peer waits on a half-open connection.
        self._abort(writer)

    @staticmethod
    def _abort(writer: asyncio.StreamWriter) -> None:
        # abort() sends RST and drops buffered data: a cut looks like a crashed peer, not a goodbye.
        with contextlib.suppress(Exception):
            writer.transport.abort()
