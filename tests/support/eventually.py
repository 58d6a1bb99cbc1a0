"""Bounded polling for a condition, so no test ever sleeps for a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Poll `condition` until it returns a truthy value (returned) or `timeout` seconds pass.

    An exception raised by the condition counts as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last_value = value
        except Exception as exc:  # AssertionError included: "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            what = message or getattr(condition, "__name__", "condition")
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
            raise AssertionError(f"{what} not met within {timeout:.1f}s ({detail})")
        await asyncio.sleep(interval)
