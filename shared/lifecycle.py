"""`async with` for anything that has `start()` and `stop()`: the one lifecycle of this project."""

from __future__ import annotations

from typing import Self


class Lifecycle:
    """Started on entering `async with`, stopped on leaving it (also when the body raised)."""

    async def start(self) -> None:
        """Nothing to do unless a subclass says so."""

    async def stop(self) -> None:
        """Nothing to do unless a subclass says so."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
