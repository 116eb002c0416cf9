"""The shared store for several replicas: each call one round trip, its checks and writes in Lua."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable

import orjson

from ..iowait import waited_on
from .base import CUT, Option, Replayed, StateUnavailable, choose

if TYPE_CHECKING:
    from ..ledger import Limit


# Shared by both scripts: release reservations past their hold time (a bounded batch per call,
# so a backlog is worked off over a few calls), check bounds, add with an expiry.
_LUA_COMMON = """
local p, now = ARGV[1], tonumber(ARGV[2])
local function release_due()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'reserved', '-inf', now, 'LIMIT', 0, 256)) do
    local held = redis.call('GET', p .. 'res:' .. id)
    if held then
      for _, h in ipairs(cjson.decode(held)) do
        if redis.call('EXISTS', p .. h[1]) == 1 then redis.call('INCRBYFLOAT', p .. h[1], -h[3]) end
      end
      redis.call('DEL', p .. 'res:' .. id)
    end
    redis.call('ZREM', p .. 'reserved', id)
  end
end
local function fit(limits)  -- each {key, limit (-1: none), cost, ttl}: value + cost <= limit
  for _, c in ipairs(limits) do
    if c[2] >= 0 and tonumber(redis.call('GET', p .. c[1]) or '0') + c[3] > c[2] then
      return false
    end
  end
  return true
end
local function add(limits)
  for _, c in ipairs(limits) do
    redis.call('INCRBYFLOAT', p .. c[1], c[3])
    redis.call('EXPIRE', p .. c[1], c[4], 'NX')
  end
end
release_due()
"""

_LUA_RESERVE = _LUA_COMMON + """
local request = cjson.decode(ARGV[3])
local taken, picks = {}, {}
for _, name in ipairs(request.taken) do taken[name] = true end
for _, options in ipairs(request.needs) do
  local pick = 0
  for index, o in ipairs(options) do
    if o == 0 then return picks end
    local free = true
    for _, name in ipairs(o.n) do if taken[name] then free = false end end
    if free and fit(o.c) then
      if o.r ~= '' then
        add(o.h)
        redis.call('SET', p .. 'res:' .. o.r, cjson.encode(o.h), 'EX', math.ceil(request.hold) + 3600)
        redis.call('ZADD', p .. 'reserved', now + request.hold, o.r)
      end
      for _, name in ipairs(o.n) do taken[name] = true end
      pick = index
      break
    end
  end
  picks[#picks + 1] = pick
end
return picks
"""

_LUA_SETTLE = _LUA_COMMON + """
local outcome, ttl, reservation, charges = ARGV[3], ARGV[4], ARGV[5], cjson.decode(ARGV[6])
local known = redis.call('GET', p .. outcome)
if known then return tonumber(known) end
local billable = 0
if reservation ~= '' and redis.call('ZREM', p .. 'reserved', reservation) == 1 then
  redis.call('DEL', p .. 'res:' .. reservation)
  for _, c in ipairs(charges) do
    if c[2] < 0 then add({c}) end
  end
  billable = 1
elseif fit(charges) then
  add(charges)
  billable = 1
end
redis.call('SET', p .. outcome, billable, 'EX', ttl)
return billable
"""


def _lua(limits: tuple[Limit, ...]) -> list:
    return [[lim.key, -1 if lim.limit is None else lim.limit, lim.cost, lim.ttl] for lim in limits]


FEED_KEPT = 100_000  # changes a feed keeps for processes that start later


class RedisState:
    """Shared counters for several replicas; one round trip per call (a script, MGET or SET).

    Faults degrade, never break: connections come from a bounded pool that waits (up to
    ``wait`` seconds) instead of failing, and once Redis cannot be reached the store is
    ``down``: calls fail at once with ``StateUnavailable`` (a decision serves only campaigns
    without limits) until ``open`` succeeds again.
    """

    def __init__(self, url: str, prefix: str = "adserve:", clock=time.time, pool_size: int = 64,
                 wait: float = 1.0) -> None:
        import redis.asyncio as redis  # optional dependency, only for multi-replica setups
        from redis.exceptions import RedisError

        pool = redis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=wait,
                                                     socket_timeout=wait, socket_connect_timeout=wait)
        self._redis = redis.Redis(connection_pool=pool)
        self._faults = (RedisError, OSError)
        self._prefix = prefix
        self._clock = clock
        self._reserve = self._redis.register_script(_LUA_RESERVE)
        self._settle = self._redis.register_script(_LUA_SETTLE)
        self.down = False

    async def _call(self, command):
        """Run one command (an awaitable), or mark the store down."""
        if self.down:
            command.close()
            raise StateUnavailable("redis is down")
        try:
            return await waited_on(command)
        except self._faults as exc:
            self.down = True
            raise StateUnavailable(f"redis: {exc}") from exc

    async def reserve(self, needs: list[Iterable[Option | None]], taken: set[str],
                      hold_seconds: float) -> list[int | None]:
        needs = [list(options) for options in needs]  # one round trip: every option goes at once
        if not any(option is not CUT and option.checks for options in needs for option in options):
            return choose(needs, taken, lambda option: True, lambda option: None)  # no counter to read
        request = {"taken": sorted(taken), "hold": hold_seconds, "needs": [
            [0 if o is CUT else {"n": o.names, "c": _lua(o.checks), "h": _lua(o.holds), "r": o.reservation or ""}
             for o in options] for options in needs]}
        try:
            picks = await self._call(self._reserve(args=[self._prefix, self._clock(), orjson.dumps(request)]))
        except StateUnavailable:  # serve what no counter limits: uncapped and house campaigns
            return choose(needs, taken, lambda option: not option.checks, lambda option: None)
        return [pick - 1 if pick else None for pick in picks]

    async def settle(self, outcome: str, ttl: int, reservation: str | None,
                     charges: tuple[Limit, ...]) -> bool:
        billable = await self._call(self._settle(args=[self._prefix, self._clock(), outcome, ttl,
                                                       reservation or "", orjson.dumps(_lua(charges))]))
        return billable == 1

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        values = await self._call(self._redis.mget([self._prefix + k for k in keys]))
        return [float(v) if v is not None else 0.0 for v in values]

    async def first_time(self, key: str, ttl: int) -> bool:
        return bool(await self._call(self._redis.set(self._prefix + key, 1, ex=ttl, nx=True)))

    async def forget(self, key: str) -> None:
        await self._call(self._redis.delete(self._prefix + key))

    async def assign(self, key: str, value: str, ttl: int) -> str:
        kept = await self._call(self._redis.set(self._prefix + key, value, ex=ttl, nx=True, get=True))
        return value if kept is None else kept.decode()

    async def open(self) -> bool:
        """Reach Redis again; True when it lost its data (its marker key is gone) and needs a rebuild.

        Only one replica gets True for one loss: the marker is set with NX. Every pooled connection
        is dropped first: after an outage they may all point at the dead server, and the first
        command on each would fail and mark the store down again.
        """
        try:
            await self._redis.connection_pool.disconnect()
            empty = bool(await self._redis.set(self._prefix + "alive", 1, nx=True))
        except self._faults as exc:
            self.down = True
            raise StateUnavailable(f"redis: {exc}") from exc
        self.down = False
        return empty

    async def restore(self, replayed: Replayed, batch: int = 2000) -> None:
        """Counters and marks from the log, each expiring as it would have; pipelined in batches."""
        now = self._clock()
        commands = [(count.key, count.cost, int(count.ttl - (now - ts)), False) for count, ts in replayed.counts]
        commands += [(key, 1, int(ttl - (now - ts)), True) for key, ttl, ts in replayed.marks]
        for start in range(0, len(commands), batch):
            pipe = self._redis.pipeline(transaction=False)
            for key, amount, left, mark in commands[start:start + batch]:
                if left <= 0:
                    continue  # it would have expired by now
                if mark:
                    pipe.set(self._prefix + key, 1, ex=left, nx=True)
                else:
                    pipe.incrbyfloat(self._prefix + key, amount)
                    pipe.expire(self._prefix + key, left, nx=True)
            await self._call(pipe.execute())

    async def publish(self, feed: str, payload: bytes) -> None:
        """XADD to a stream that keeps about the last ``FEED_KEPT`` changes."""
        await self._call(self._redis.xadd(self._prefix + feed, {"v": payload}, maxlen=FEED_KEPT,
                                          approximate=True))

    async def follow(self, feed: str, after: str, batch: int = 1000) -> tuple[str, list[bytes]]:
        """One XREAD without blocking: a blocked read would hold a pooled connection past its timeout."""
        found = await self._call(self._redis.xread({self._prefix + feed: after}, count=batch))
        entries = found[0][1] if found else []
        return (entries[-1][0].decode() if entries else after), [fields[b"v"] for _, fields in entries]

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
