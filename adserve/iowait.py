"""Time a request spends waiting on another process (Redis), kept apart from the work it costs.

Load shedding counts the work admitted requests cost (``server/listener.py``). A request that
awaits a Redis round trip is suspended while others run: counting its whole time in the handler
would count their work again, once per request in flight, and 32 concurrent requests on Redis
would look like 32 times the work and be refused as overload. Awaits of another process go
through ``waited_on`` and are left out.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
_waits: ContextVar[list[float] | None] = ContextVar("io_waits", default=None)


def track() -> list[float]:
    """Start counting the current task's waits; the returned cell holds their seconds so far."""
    cell = [0.0]
    _waits.set(cell)
    return cell


async def waited_on(awaitable: Awaitable[T]) -> T:
    """``await awaitable``, its wall time counted as waiting when the task is tracked."""
    cell = _waits.get()
    if cell is None:
        return await awaitable
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        cell[0] += time.perf_counter() - started
