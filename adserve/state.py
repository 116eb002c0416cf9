"""Counters, reservations and one-time marks behind a small interface: in-process, or Redis for replicas.

A decision hands the store every need's ranked options at once (``reserve``): the store picks,
per need, the first option whose limits all fit and reserves its impression counters, in one
atomic step (one Lua call on Redis), so concurrent pages cannot all take the last impression.
A pixel confirms its reservation, or, once it has expired, is charged only if its limits still
fit (``settle``). Reservations never confirmed are released after the hold time. The stores
only store: ``ledger.py`` says which counters exist and what bounds them.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Protocol

import orjson

from .ledger import fits

if TYPE_CHECKING:
    from .ledger import Limit


class Option(NamedTuple):
    """One candidate of one need, as the store sees it (a tuple: a page makes a dozen)."""
    names: tuple[str, ...]      # what it takes on the page (its campaign, its advertiser): never twice
    checks: tuple[Limit, ...]   # the bounded limits; all must fit
    holds: tuple[Limit, ...]    # bounded impression-metered counters, reserved when it is chosen
    reservation: str | None     # id of that reservation; None: nothing is reserved


class StateUnavailable(Exception):
    """The shared store cannot be reached; the caller degrades (see ``RedisState``)."""


class Replayed:
    """Counts and token marks read back from the event log, for a store to take in one go."""

    def __init__(self) -> None:
        self.counts: list[tuple[Limit, float]] = []  # (counter, moment of its event)
        self.marks: list[tuple[str, int, float]] = []  # (key, ttl, moment)

    def seed(self, counts: Iterable[Limit], now: float) -> None:
        self.counts += [(count, now) for count in counts]

    def mark(self, key: str, ttl: int, now: float) -> None:
        self.marks.append((key, ttl, now))


# In a need's options: the tier before it was cut short. If nothing fit so far, ``reserve``
# stops there and the decision asks again with that tier whole.
CUT = None


class StateStore(Protocol):
    async def reserve(self, needs: list[Iterable[Option | None]], taken: set[str],
                      hold_seconds: float) -> list[int | None]:
        """Per need, the index of the first option that fits and is not taken (None: none).

        Fewer answers than needs when a need reached a ``CUT`` with nothing fitting. The
        options may come lazily: a store reads no further than it needs.
        """

    async def settle(self, outcome: str, ttl: int, reservation: str | None,
                     charges: tuple[Limit, ...]) -> bool:
        """Confirm ``reservation`` if it is still held (and add the unbounded ``charges``, which
        it did not hold), else add all ``charges`` if they all fit.

        Whether the event is billable; remembered under ``outcome`` for ``ttl`` seconds, so a
        retried hit gets the same answer and moves nothing twice.
        """

    async def get_many(self, keys: list[str]) -> list[float]:
        """Current values (0 for missing or expired keys), in the order asked."""

    async def first_time(self, key: str, ttl: int) -> bool:
        """True exactly once per key within ``ttl`` seconds: deduplicates tracking tokens."""

    async def forget(self, key: str) -> None:
        """Drop a mark, e.g. a token whose event could not be written, so its retry counts."""

    async def open(self) -> bool:
        """Connect; True when the store holds nothing yet (fresh, or restarted without its data)."""

    async def restore(self, replayed: Replayed) -> None:
        """Take counters and marks rebuilt from the event log."""

    async def close(self) -> None:
        """Release connections."""


def choose(needs: list[Iterable[Option | None]], taken: set[str], allowed: Callable[[Option], bool],
           take: Callable[[Option], None]) -> list[int | None]:
    """The walk ``reserve`` makes (the Redis store makes it in Lua, in the same order)."""
    taken = set(taken)
    picks: list[int | None] = []
    for options in needs:
        pick = None
        for index, option in enumerate(options):
            if option is CUT:
                return picks
            if taken.isdisjoint(option.names) and allowed(option):
                take(option)
                taken.update(option.names)
                pick = index
                break
        picks.append(pick)
    return picks


class MemoryState:
    """The embedded default: one dict, with expiry buckets so expired keys leave a few at a time.

    Each key created is also filed under the minute it expires in; a write drops the buckets
    whose minute has passed. Expiry work is spread over the writes that cause it, never one
    pass over the whole dict that would stall the event loop. Nothing awaits between a check
    and its increment, so both are atomic.

    An open reservation is its id and one flat tuple of the counter keys it holds and their
    costs (keys shared with the ledger's, a few hundred bytes in all; no objects of the
    decision), filed under the second it is released in: a server holds one per answered ad
    for the hold time. Releases come at most a second after the hold time.
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires_at)
        self._expiring: dict[int, list[str]] = {}  # minute -> keys created to expire then
        self._swept_minute = int(clock() // 60)
        self._reserved: dict[str, tuple] = {}  # reservation id -> (key, cost, key, cost, ...) it holds
        self._releasing: dict[int, list[str]] = {}  # second -> reservations released then
        self._release_seconds: list[int] = []  # heap of the seconds in ``_releasing``

    async def reserve(self, needs: list[Iterable[Option | None]], taken: set[str],
                      hold_seconds: float) -> list[int | None]:
        now = self._clock()
        self._release_due(now)

        def take(option: Option) -> None:
            if option.reservation is not None:
                held: list = []
                for key, _limit, cost, _event, ttl in option.holds:
                    self._add(key, cost, now, ttl)
                    held += (key, cost)
                self._reserved[option.reservation] = tuple(held)
                second = math.ceil(now + hold_seconds)
                due = self._releasing.get(second)
                if due is None:
                    due = self._releasing[second] = []
                    heapq.heappush(self._release_seconds, second)
                due.append(option.reservation)

        picks = choose(needs, taken, lambda option: self._fit(option.checks, now), take)
        self._sweep(now)
        return picks

    async def settle(self, outcome: str, ttl: int, reservation: str | None,
                     charges: tuple[Limit, ...]) -> bool:
        now = self._clock()
        self._release_due(now)
        known = self._value(outcome, now)
        if known is not None:
            return known == 1.0
        billable = reservation is not None and self._reserved.pop(reservation, None) is not None
        if billable:
            self.seed([charge for charge in charges if charge.limit is None], now)
        elif self._fit(charges, now):
            self.seed(charges, now)
            billable = True
        self._create(outcome, 1.0 if billable else 0.0, now + ttl)
        return billable

    async def get_many(self, keys: list[str]) -> list[float]:
        now = self._clock()
        return [self._value(key, now) or 0.0 for key in keys]

    def seed(self, counts: Iterable[Limit], now: float) -> None:
        """Add each count's cost as of moment ``now``: also how the event log is replayed at start-up."""
        for count in counts:
            self._add(count.key, count.cost, now, count.ttl)
        self._sweep(self._clock())

    def _add(self, key: str, cost: float, now: float, ttl: int) -> None:
        entry = self._values.get(key)
        if entry and entry[1] > now:
            self._values[key] = (entry[0] + cost, entry[1])
        else:
            self._create(key, cost, now + ttl)

    def mark(self, key: str, ttl: int, now: float) -> None:
        """``first_time``'s mark as of moment ``now``: replayed tokens stay counted once."""
        self._create(key, 1.0, now + ttl)

    async def first_time(self, key: str, ttl: int) -> bool:
        now = self._clock()
        if self._value(key, now) is not None:
            return False
        self._create(key, 1.0, now + ttl)
        self._sweep(now)
        return True

    async def forget(self, key: str) -> None:
        self._values.pop(key, None)

    def has(self, key: str) -> bool:
        """Whether ``key`` holds a value now (a replay asks if a hit was billed before the checkpoint)."""
        return self._value(key, self._clock()) is not None

    def _value(self, key: str, now: float) -> float | None:
        entry = self._values.get(key)
        return entry[0] if entry and entry[1] > now else None

    def _fit(self, limits: tuple[Limit, ...], now: float) -> bool:
        values = self._values
        for key, limit, cost, _event, _ttl in limits:
            entry = values.get(key)
            if not fits(entry[0] if entry and entry[1] > now else 0.0, cost, limit):
                return False
        return True

    def _release_due(self, now: float) -> None:
        """Give back what reservations past their hold time still hold (settled ones are gone)."""
        while self._release_seconds and self._release_seconds[0] <= now:
            for reservation in self._releasing.pop(heapq.heappop(self._release_seconds)):
                self._unhold(self._values, self._reserved.pop(reservation, ()), now)

    @staticmethod
    def _unhold(values: dict[str, tuple[float, float]], held: tuple, now: float) -> None:
        for key, cost in zip(held[::2], held[1::2]):
            entry = values.get(key)
            if entry and entry[1] > now:
                values[key] = (entry[0] - cost, entry[1])

    def _create(self, key: str, value: float, expires: float) -> None:
        self._values[key] = (value, expires)
        minute = max(int(expires // 60), self._swept_minute)  # replayed keys may be due already
        self._expiring.setdefault(minute, []).append(key)

    def _sweep(self, now: float) -> None:
        """Drop the keys of every expiry minute that has passed by ``now`` (the clock's, not an event's)."""
        minute = int(now // 60)
        while self._swept_minute < minute:
            for key in self._expiring.pop(self._swept_minute, ()):
                entry = self._values.get(key)
                if entry is not None and entry[1] <= now:
                    del self._values[key]
            self._swept_minute += 1

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """Every key -> (value, expires_at), copied at once: what a checkpoint saves.

        Without what open reservations hold: reservations are not saved, so a restart must not
        keep their holds either (they would never be released, and their pixels charged again).
        """
        values = self._values.copy()
        now = self._clock()
        for held in self._reserved.values():
            self._unhold(values, held, now)
        return values

    def load_snapshot(self, entries) -> None:
        """Take back a checkpoint's (key, (value, expires_at)) pairs, except those expired since."""
        now = self._clock()
        for key, (value, expires) in entries:
            if expires > now:
                self._create(key, value, expires)

    def __len__(self) -> int:
        return len(self._values)

    async def open(self) -> bool:
        return not self._values

    async def restore(self, replayed: Replayed) -> None:
        for count, now in replayed.counts:
            self.seed((count,), now)
        for key, ttl, now in replayed.marks:
            self.mark(key, ttl, now)

    async def close(self) -> None:
        pass


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
            return await command
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

    async def open(self) -> bool:
        """Reach Redis again; True when it lost its data (its marker key is gone) and needs a rebuild.

        Only one replica gets True for one loss: the marker is set with NX.
        """
        try:
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
