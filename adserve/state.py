"""Counters and one-time marks behind a small interface: in-process by default, Redis for replicas.

The decision code only calls ``get_many``, ``add`` and ``first_time``; a shared store can back
them without the decision code knowing. Keys expire so per-user frequency counters do not grow
without bound.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol


class StateStore(Protocol):
    async def get_many(self, keys: list[str]) -> list[float]:
        """Current values (0 for missing or expired keys), in the order asked."""

    async def add(self, increments: dict[str, float], ttl: dict[str, int]) -> None:
        """Add each amount to its key; a key created here expires after ``ttl[key]`` seconds."""

    async def first_time(self, key: str, ttl: int) -> bool:
        """True exactly once per key within ``ttl`` seconds: deduplicates tracking tokens."""

    async def close(self) -> None:
        """Release connections."""


class MemoryState:
    """The embedded default: one dict, with expiry buckets so expired keys leave a few at a time.

    Each key created is also filed under the minute it expires in; a write drops the buckets
    whose minute has passed. Expiry work is spread over the writes that cause it, never one
    pass over the whole dict that would stall the event loop.
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires_at)
        self._expiring: dict[int, list[str]] = {}  # minute -> keys created to expire then
        self._swept_minute = int(clock() // 60)

    async def get_many(self, keys: list[str]) -> list[float]:
        now = self._clock()
        out = []
        for key in keys:
            entry = self._values.get(key)
            out.append(entry[0] if entry and entry[1] > now else 0.0)
        return out

    async def add(self, increments: dict[str, float], ttl: dict[str, int]) -> None:
        self.seed(increments, ttl, self._clock())

    def seed(self, increments: dict[str, float], ttl: dict[str, int], now: float) -> None:
        """``add`` as of moment ``now``: rebuilds counters from the event log at start-up."""
        for key, amount in increments.items():
            entry = self._values.get(key)
            if entry and entry[1] > now:
                self._values[key] = (entry[0] + amount, entry[1])
            else:
                self._create(key, amount, now + ttl[key])
        self._sweep()

    async def first_time(self, key: str, ttl: int) -> bool:
        now = self._clock()
        entry = self._values.get(key)
        if entry and entry[1] > now:
            return False
        self._create(key, 1.0, now + ttl)
        self._sweep()
        return True

    def _create(self, key: str, value: float, expires: float) -> None:
        self._values[key] = (value, expires)
        minute = max(int(expires // 60), self._swept_minute)  # replayed keys may be due already
        self._expiring.setdefault(minute, []).append(key)

    def _sweep(self) -> None:
        """Drop the keys of every expiry minute that has passed since the last sweep."""
        now = self._clock()
        minute = int(now // 60)
        while self._swept_minute < minute:
            for key in self._expiring.pop(self._swept_minute, ()):
                entry = self._values.get(key)
                if entry is not None and entry[1] <= now:
                    del self._values[key]
            self._swept_minute += 1

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """Every key -> (value, expires_at), copied at once: what a checkpoint saves."""
        return self._values.copy()

    def restore(self, entries) -> None:
        """Take back a checkpoint's (key, (value, expires_at)) pairs, except those expired since."""
        now = self._clock()
        for key, (value, expires) in entries:
            if expires > now:
                self._create(key, value, expires)

    def __len__(self) -> int:
        return len(self._values)

    async def close(self) -> None:
        pass


class RedisState:
    """Shared counters for several replicas; one round trip per call (MGET, or a pipeline)."""

    def __init__(self, url: str, prefix: str = "adserve:") -> None:
        import redis.asyncio as redis  # optional dependency, only for multi-replica setups

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        values = await self._redis.mget([self._prefix + k for k in keys])
        return [float(v) if v is not None else 0.0 for v in values]

    async def add(self, increments: dict[str, float], ttl: dict[str, int]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key, amount in increments.items():
            full = self._prefix + key
            pipe.incrbyfloat(full, amount)
            pipe.expire(full, ttl[key], nx=True)
        await pipe.execute()

    async def first_time(self, key: str, ttl: int) -> bool:
        return bool(await self._redis.set(self._prefix + key, 1, ex=ttl, nx=True))

    async def delete_matching(self, pattern: str, wanted: Callable[[str], bool]) -> list[str]:
        """Delete the keys that match a glob and ``wanted`` (erasure of one reader's counters)."""
        keys = []
        async for raw in self._redis.scan_iter(match=self._prefix + pattern, count=1000):
            key = raw.decode()[len(self._prefix):]
            if wanted(key):
                keys.append(key)
        if keys:
            await self._redis.delete(*(self._prefix + k for k in keys))
        return keys

    async def close(self) -> None:
        await self._redis.aclose()
