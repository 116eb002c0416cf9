"""The shared store for several replicas: each call one command, its checks and writes in Lua."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

import orjson

from ..iowait import waited_on
from .base import CUT, Option, Replayed, StateUnavailable, choose

if TYPE_CHECKING:
    from ..ledger import Limit


# Shared by both scripts: release reservations past their hold time (a bounded batch per call,
# 256 per page of a reserve call so releasing keeps pace with reserving; a backlog is worked off
# over a few calls), check bounds, add with an expiry. A request is one flat JSON array: decoding
# it nested (a table per option and per limit) took the script ~30-50 µs, more than all its
# counter reads and writes; flat, one table. In it a limit is
# ``key, limit (null: none), cost``, a counter to add ``key, cost, ttl``. Costs are whole units
# (spend in micro-units): INCRBY, ~3x cheaper than INCRBYFLOAT, which is left for a fraction.
_LUA_COMMON = """
local p, now, null = ARGV[1], tonumber(ARGV[2]), cjson.null
local function incr(key, amount)
  local value = redis.pcall('INCRBY', key, amount)
  if type(value) == 'table' then value = redis.call('INCRBYFLOAT', key, amount) end  -- not whole
  return tonumber(value)
end
local function release_due(calls)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'reserved', '-inf', now, 'LIMIT', 0, 256 * calls)) do
    local held = redis.call('GET', p .. 'res:' .. id)
    if held then
      for _, h in ipairs(cjson.decode(held)) do
        if redis.call('EXISTS', p .. h[1]) == 1 then incr(p .. h[1], -h[3]) end
      end
      redis.call('DEL', p .. 'res:' .. id)
    end
    redis.call('ZREM', p .. 'reserved', id)
  end
end
local function fit(r, first, last, step)  -- value + cost <= limit, for each bounded one in r[first..last]
  for i = first, last, step do
    if r[i + 1] ~= null and tonumber(redis.call('GET', p .. r[i]) or '0') + r[i + 2] > r[i + 1] then
      return false
    end
  end
  return true
end
local function add(key, cost, ttl)  -- a new counter (its first add) gets the expiry
  if incr(p .. key, cost) == cost then redis.call('EXPIRE', p .. key, ttl, 'NX') end
end
"""

# The pages whose walks reach Redis in one turn of the loop come in one call (``Pipe.run_each``):
# ARGV[2], ARGV[3] are one page's clock and request, ARGV[4], ARGV[5] the next's, and so on (what
# is due by the latest page's clock is released first: no page sees a hold that has ended by its
# own clock); each page is walked in its own ``pcall``, so a page whose walk fails gets its error,
# with its writes undone (a page is reserved whole or not at all), and the others their picks.
# A request is [hold seconds, the number of taken names, the names..., then per need: the number
# of entries its options take (n, or -n - 1 when they end with a ``CUT``), and per option: the
# number of names and the names, the number of checks and the checks, the number of holds and the
# holds, the reservation id (null: none); or, for an option an earlier need sent already, -(its
# place in the request) (a widget's positions offer the same few: a third of a light page's
# request)]. A reservation keeps its holds as JSON [[key, null, cost], ...], which every version
# of this script releases.
_LUA_RESERVE = _LUA_COMMON + """
for k = 4, #ARGV, 2 do now = math.max(now, tonumber(ARGV[k])) end
release_due((#ARGV - 1) / 2)
local added, made  -- the writes of the page being walked: [key, cost, ...], its reservation ids
local function walk(now, request)
  local r, taken, picks = cjson.decode(request), {}, {}
  local hold, i = r[1], 3 + r[2]
  for n = 3, i - 1 do taken[r[n]] = true end
  while i <= #r do
    local span = r[i]
    local cut = span < 0
    if cut then span = -span - 1 end
    local stop, pick, index = i + 1 + span, 0, 0
    i = i + 1
    while i < stop do
      index = index + 1
      local at = i  -- where the option is: here, or (-r[i]) where an earlier need sent it
      if r[i] < 0 then at = -r[i] end
      local names = at + 1
      local checks = names + r[at]
      local holds = checks + 1 + 3 * r[checks]
      local reservation = holds + 1 + 3 * r[holds]
      local free = true
      for n = names, checks - 1 do if taken[r[n]] then free = false break end end
      if free and fit(r, checks + 1, holds - 1, 3) then
        if r[reservation] ~= null then
          local held = {}
          for h = holds + 1, reservation - 1, 3 do
            add(r[h], r[h + 1], r[h + 2])
            added[#added + 1], added[#added + 2] = r[h], r[h + 1]
            held[#held + 1] = '[' .. cjson.encode(r[h]) .. ',null,' .. r[h + 1] .. ']'
          end
          redis.call('SET', p .. 'res:' .. r[reservation], '[' .. table.concat(held, ',') .. ']',
                     'EX', math.ceil(hold) + 3600)
          redis.call('ZADD', p .. 'reserved', now + hold, r[reservation])
          made[#made + 1] = r[reservation]
        end
        for n = names, checks - 1 do taken[r[n]] = true end
        pick = index
        break
      end
      if at == i then i = reservation + 1 else i = i + 1 end
    end
    if pick == 0 and cut then return picks end
    picks[#picks + 1] = pick
    i = stop
  end
  return picks
end
local function undo()  -- a page whose walk failed keeps none of its reservations
  for i = 1, #added, 2 do incr(p .. added[i], -added[i + 1]) end
  for _, id in ipairs(made) do
    redis.call('DEL', p .. 'res:' .. id)
    redis.call('ZREM', p .. 'reserved', id)
  end
end
local replies = {}
for k = 2, #ARGV, 2 do
  added, made = {}, {}
  local ok, picks = pcall(walk, tonumber(ARGV[k]), ARGV[k + 1])
  if not ok then
    undo()
    if type(picks) ~= 'table' then picks = redis.error_reply(tostring(picks)) end
  end
  replies[#replies + 1] = picks  -- a redis.call's error comes as its error reply already
end
return replies
"""

# ARGV[3..8]: outcome key, its ttl, the reservation ('': none), a token mark ('': none) and the
# attempt claiming it, the charges [key, limit (null: none), cost, ttl, ...]. A mark another
# attempt holds is a repeated hit: -1, nothing moves; else it is set to this attempt, with the
# outcome's ttl, in the same call (``claim``: the same attempt asking again reads its outcome).
_LUA_SETTLE = _LUA_COMMON + """
release_due(1)
local outcome, ttl, reservation, mark, attempt = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local c = cjson.decode(ARGV[8])
if mark ~= '' then
  local held = redis.call('SET', p .. mark, attempt, 'EX', ttl, 'NX', 'GET')
  if held and held ~= attempt then return -1 end
end
local known = redis.call('GET', p .. outcome)
if known then return tonumber(known) end
local billable = 0
if reservation ~= '' and redis.call('ZREM', p .. 'reserved', reservation) == 1 then
  redis.call('DEL', p .. 'res:' .. reservation)
  for i = 1, #c, 4 do
    if c[i + 1] == null then add(c[i], c[i + 2], c[i + 3]) end
  end
  billable = 1
elseif fit(c, 1, #c, 4) then
  for i = 1, #c, 4 do add(c[i], c[i + 2], c[i + 3]) end
  billable = 1
end
redis.call('SET', p .. outcome, billable, 'EX', ttl)
return billable
"""


FIRST_READ = 2  # options of a need the first round trip carries


class _Reading:
    """One need's options read so far from its lazy source, and how many of them were refused."""

    __slots__ = ("source", "read", "refused")

    def __init__(self, options: Iterable[Option | None]) -> None:
        self.source = iter(options)
        self.read: list[Option | None] = []
        self.refused = 0

    def next(self) -> tuple[list[Option | None], bool]:
        """The options to send, twice as many as were refused (at least ``FIRST_READ``), and whether
        more may follow: then a CUT ends them, so the script stops there if none fits."""
        read, refused = self.read, self.refused
        if read and read[-1] is CUT:
            return read[refused:], False
        wanted = refused + max(FIRST_READ, 2 * refused)
        if len(read) < wanted:
            for option in self.source:  # a for loop: the generator resumed without a Python call
                read.append(option)
                if option is CUT:
                    return read[refused:], False
                if len(read) == wanted:
                    break
            else:
                return read[refused:], False
        return read[refused:] + [CUT], True


def _reserve_request(needs: list[list[Option | None]], taken: set[str], hold_seconds: float) -> bytes | None:
    """The reserve script's request (see ``_LUA_RESERVE``); None when no option has a counter to read."""
    args: list = [hold_seconds, len(taken), *taken]
    bounded = False
    # id(option) -> where it is in the request (the script's 1-based index); the needs hold the
    # options while it is built, so no id is reused
    sent: dict[int, int] = {}
    for options in needs:
        at = len(args)
        args.append(0)
        cut = False
        for option in options:
            if option is CUT:
                cut = True
                break
            earlier = sent.get(id(option))
            if earlier is not None:  # the same option for another need (a widget's positions): its place
                args.append(-earlier)
                continue
            sent[id(option)] = len(args) + 1
            names, checks, holds, reservation = option
            if checks:
                bounded = True
            args.append(len(names))
            args += names
            args.append(len(checks))
            for key, limit, cost, _event, _ttl in checks:
                args += (key, limit, cost)
            args.append(len(holds))
            for key, _limit, cost, _event, ttl in holds:
                args += (key, cost, ttl)
            args.append(reservation)
        span = len(args) - at - 1
        args[at] = -span - 1 if cut else span
    return orjson.dumps(args) if bounded else None


def _charges(charges: tuple[Limit, ...]) -> bytes:
    """The settle script's charges: ``key, limit, cost, ttl`` each."""
    args: list = []
    for key, limit, cost, _event, ttl in charges:
        args += (key, limit, cost, ttl)
    return orjson.dumps(args)


FEED_KEPT = 100_000  # changes a feed keeps for processes that start later
REBUILDING = b"rebuilding:"  # the marker's value while a replica rebuilds the store, then its own id


class RedisState:
    """Shared counters for several replicas; one command per call (a script, MGET or SET), all on
    one pipelined connection (``redis_pipe``); the reserve walks of one turn of the loop share
    one script call.

    Faults degrade, never break: a command without a reply within ``wait`` seconds fails, and once
    Redis cannot be reached, or the connection was dropped (even idle: the Redis it would reconnect
    to may have restarted empty, which only ``open`` checks), the store is ``down``: calls fail at
    once with ``StateUnavailable`` (a decision serves only campaigns without limits) until ``open``
    succeeds again. While a replica rebuilds an empty Redis from the log the store is ``down`` and
    ``rebuilding`` on every replica (see ``open``): its counters are not yet worth reserving against.
    """

    def __init__(self, url: str, prefix: str = "adserve:", clock=time.time, wait: float = 1.0,
                 rebuild_within: int = 600) -> None:
        from redis.exceptions import RedisError  # optional dependency, only for multi-replica setups

        from ..redis_pipe import CallError, Pipe, Script

        self._redis = Pipe(url, wait)
        self._call_error = CallError
        self._faults = (RedisError, OSError)
        self._reserve = Script(_LUA_RESERVE)
        self._settle = Script(_LUA_SETTLE)
        self._prefix = prefix
        self._clock = clock
        self._rebuild_within = rebuild_within
        self._rebuilder = REBUILDING + uuid.uuid4().hex.encode()  # the marker while this store rebuilds
        self._drops = 0  # the pipe's dropped connections as of the last ``open``
        self.down = False
        self.rebuilding = False

    async def _call(self, issue: Callable[..., Awaitable], *args):
        """``issue(*args)``'s reply (a pipe's ``call`` or ``run``), or mark the store down; a page's
        own error in a shared call (its data broke its walk) fails that page alone."""
        if self.down or self._redis.drops != self._drops:
            self.down = True
            raise StateUnavailable("redis is down")
        return await self._reach(issue, *args)

    async def _reach(self, issue: Callable[..., Awaitable], *args):
        """``_call`` even while the store is down: the rebuild's own writes."""
        try:
            return await waited_on(issue(*args))
        except self._call_error as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        except self._faults as exc:
            self.down = True
            raise StateUnavailable(f"redis: {exc}") from exc

    async def reserve(self, needs: list[Iterable[Option | None]], taken: set[str],
                      hold_seconds: float) -> list[int | None]:
        """The script walks a few options per need (working each out costs the ledger's checks; the
        first or second fits on nearly every page); only when a need refused all it was sent does
        the next round trip carry more of its options, from that need on."""
        readings = [_Reading(options) for options in needs]
        picks: list[int | None] = []
        taken = set(taken)
        while len(picks) < len(needs):
            sent = [reading.next() for reading in readings[len(picks):]]
            walked = await self._walk([options for options, _ in sent], taken, hold_seconds)
            for reading, pick in zip(readings[len(picks):], walked):
                if pick is not None:
                    pick += reading.refused
                    taken.update(reading.read[pick].names)
                picks.append(pick)
            if len(walked) < len(sent):  # stopped at a CUT, or where the options sent ran out
                if not sent[len(walked)][1]:
                    return picks
                readings[len(picks)].refused = len(readings[len(picks)].read)
        return picks

    async def _walk(self, needs: list[list[Option | None]], taken: set[str],
                    hold_seconds: float) -> list[int | None]:
        """One round trip of the reserve script, with the other pages of this turn of the loop (none
        when no option has a counter to read)."""
        request = _reserve_request(needs, taken, hold_seconds)
        if request is None:
            return choose(needs, taken, lambda option: True)
        try:
            picks = await self._call(self._redis.run_each, self._reserve, (self._prefix,), self._clock(), request)
        except StateUnavailable:  # serve what no counter limits: uncapped and house campaigns
            return choose(needs, taken, lambda option: not option.checks)
        return [pick - 1 if pick else None for pick in picks]

    async def settle(self, outcome: str, ttl: int, reservation: str | None,
                     charges: tuple[Limit, ...], mark: tuple[str, str] | None = None) -> bool | None:
        billable = await self._call(self._redis.run, self._settle, self._prefix, self._clock(), outcome, ttl,
                                    reservation or "", *(mark or ("", "")), _charges(charges))
        return None if billable == -1 else billable == 1

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        values = await self._call(self._redis.call, b"MGET", *[self._prefix + k for k in keys])
        return [float(v) if v is not None else 0.0 for v in values]

    async def first_time(self, key: str, ttl: int) -> bool:
        return await self._call(self._redis.call, b"SET", self._prefix + key, 1, b"EX", ttl, b"NX") is not None

    async def forget(self, key: str) -> None:
        await self._call(self._redis.call, b"DEL", self._prefix + key)

    async def assign(self, key: str, value: str, ttl: int) -> str:
        kept = await self._call(self._redis.call, b"SET", self._prefix + key, value, b"EX", ttl, b"NX", b"GET")
        return value if kept is None else kept.decode()

    async def open(self) -> bool:
        """Reach Redis again; True when it lost its data (its marker key is gone) and this replica is
        to rebuild it: then the store stays ``down`` until ``restore`` has written the log's counts.

        The first replica to find the marker gone sets it (NX) to its own "rebuilding" value, which
        expires after ``rebuild_within`` seconds, so a rebuilder that dies holds up the others no
        longer: the next to open rebuilds. A replica that finds another's "rebuilding" marker stays
        down (StateUnavailable; its watcher asks again), so no replica reserves against counters
        the rebuild has not written yet. Its own marker (a restore that failed) it rebuilds again:
        what the failed restore wrote then counts twice, erring on the side of full caps, as does a
        rebuild whose marker expired before it ended. The connection is dropped first: after an
        outage it may still point at the dead server.
        """
        try:
            await self._redis.close()
            self._drops = self._redis.drops
            marker = await self._redis.call(b"SET", self._prefix + "alive", self._rebuilder,
                                            b"EX", self._rebuild_within, b"NX", b"GET")
        except self._faults as exc:
            self.down = True
            raise StateUnavailable(f"redis: {exc}") from exc
        mine = marker is None or marker == self._rebuilder
        self.rebuilding = self.down = mine or marker.startswith(REBUILDING)
        if self.down and not mine:
            raise StateUnavailable("redis is being rebuilt by another replica")
        return mine

    async def restore(self, replayed: Replayed, batch: int = 2000) -> None:
        """Counters and marks from the log, each expiring as it would have; pipelined in batches.
        Then the marker gets its lasting value and every replica serves limited campaigns again."""
        now = self._clock()
        commands = [(count.key, count.cost, int(count.ttl - (now - ts)), False) for count, ts in replayed.counts]
        commands += [(key, 1, int(ttl - (now - ts)), True) for key, ttl, ts in replayed.marks]
        for start in range(0, len(commands), batch):
            pipelined = []
            for key, amount, left, mark in commands[start:start + batch]:
                if left <= 0:
                    continue  # it would have expired by now
                if mark:
                    pipelined.append((b"SET", self._prefix + key, 1, b"EX", left, b"NX"))
                else:
                    pipelined += [(b"INCRBYFLOAT", self._prefix + key, amount),
                                  (b"EXPIRE", self._prefix + key, left, b"NX")]
            await self._reach(self._redis.call_many, pipelined)
        await self._reach(self._redis.call, b"SET", self._prefix + "alive", 1)
        self.rebuilding = self.down = False

    async def publish(self, feed: str, payload: bytes) -> None:
        """XADD to a stream that keeps about the last ``FEED_KEPT`` changes."""
        await self._call(self._redis.call, b"XADD", self._prefix + feed, b"MAXLEN", b"~", FEED_KEPT,
                         b"*", b"v", payload)

    async def follow(self, feed: str, after: str, batch: int = 1000) -> tuple[str, list[bytes]]:
        """One XREAD without blocking: a blocked read would hold up every command behind it."""
        found = await self._call(self._redis.call, b"XREAD", b"COUNT", batch, b"STREAMS",
                                 self._prefix + feed, after)
        entries = found[0][1] if found else []  # [[id, [field, value]], ...]
        return (entries[-1][0].decode() if entries else after), [fields[1] for _, fields in entries]

    async def delete_matching(self, pattern: str, wanted: Callable[[str], bool]) -> list[str]:
        """Delete the keys that match a glob and ``wanted`` (erasure of one reader's counters)."""
        keys, cursor = [], b"0"
        while True:
            cursor, found = await self._redis.call(b"SCAN", cursor, b"MATCH", self._prefix + pattern,
                                                   b"COUNT", 1000)
            keys += [key for key in (raw.decode()[len(self._prefix):] for raw in found) if wanted(key)]
            if cursor == b"0":
                break
        if keys:
            await self._redis.call(b"DEL", *(self._prefix + k for k in keys))
        return keys

    async def close(self) -> None:
        await self._redis.close()
