"""The embedded store: counters, reservations and marks in one process's dicts."""

from __future__ import annotations

import heapq
import math
import time
from typing import TYPE_CHECKING, Iterable, Iterator

from .base import Option, Replayed, choose, claim

if TYPE_CHECKING:
    from ..ledger import Limit

STEP = 1000  # expired keys, or reservations come due, that one call removes at most
_ABSENT = (0.0, -math.inf)  # a missing key reads as a counter expired long ago


class _Table(dict):
    """A dict the collector keeps tracking: it untracks only exact dicts whose contents it does
    not track, and the store's tables hold only such tuples. Untracked by each full collection,
    an exact dict missed the freeze of its survivors (``server/gcpolicy.py``), the next insert
    tracked it again as a young object, and the collections that followed walked every key
    (17-19 ms a million keys, benchmarks/PROFILE.md, ninth round). Its reads and writes cost
    ~30 ns more than an exact dict's (no specialised subscript): under 1 µs a page."""
    __slots__ = ()


class MemoryState:
    """The embedded default: one dict, with expiry buckets so expired keys leave a few at a time.

    Each key created is also filed under the minute it expires in; a write drops the keys of
    buckets whose minute has passed, ``STEP`` at most. Expiry work is spread over the writes,
    never one pass over the whole dict, nor over a busy minute's keys, that would stall the
    event loop. Nothing awaits between a check and its increment, so both are atomic.

    An open reservation is its id and one flat tuple of the counter keys it holds and their
    costs (keys shared with the ledger's, a few hundred bytes in all; no objects of the
    decision), filed under the second it is released in: a server holds one per answered ad
    for the hold time. Releases come about a second after the hold time, ``STEP`` per call.
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float | str, float]] = _Table()  # key -> (value, expires_at); str: an assignment
        self._expiring: dict[int, list[str]] = {}  # minute -> keys created to expire then
        self._swept_minute = int(clock() // 60)
        self._reserved: dict[str, tuple] = _Table()  # reservation id -> (key, cost, key, cost, ...) it holds
        self._releasing: dict[int, list[str]] = {}  # second -> reservations released then
        self._release_seconds: list[int] = []  # heap of the seconds in ``_releasing``
        self._now, self._second, self._due = 0.0, 0, None  # of the ``reserve`` call walking (``_take``)

    async def reserve(self, needs: list[Iterable[Option | None]], taken: set[str],
                      hold_seconds: float) -> list[int | None]:
        now = self._now = self._clock()
        self._release_due(now)
        self._second = math.ceil(now + hold_seconds)  # when what this call reserves is released
        self._due = None
        picks = choose(needs, taken, self._take)
        self._sweep(now)
        return picks

    def _take(self, option: Option) -> bool:
        """Check and hold in one call per option: nothing awaits in between, so it is atomic.
        The call's moment and release second are the store's attributes while ``reserve`` walks
        (a closure over them cost its cells on every call)."""
        checks = option.checks
        if checks and not self._fit(checks, self._now):
            return False
        reservation = option.reservation
        if reservation is not None:
            self._reserved[reservation] = self._add(option.holds, self._now)
            due = self._due
            if due is None:
                due = self._due = self._releasing.get(self._second)
                if due is None:
                    due = self._due = self._releasing[self._second] = []
                    heapq.heappush(self._release_seconds, self._second)
            due.append(reservation)
        return True

    async def settle(self, outcome: str, ttl: int, reservation: str | None,
                     charges: tuple[Limit, ...], mark: tuple[str, str] | None = None) -> bool | None:
        if mark is not None and not await claim(self, *mark, ttl):
            return None
        now = self._clock()
        self._release_due(now)
        known = self._value(outcome, now)
        if known is not None:
            return known == 1.0
        billable = reservation is not None and self._reserved.pop(reservation, None) is not None
        if billable:
            self.seed([charge for charge in charges if charge.limit is None], now)
        elif self._fit([charge for charge in charges if charge.limit is not None], now):
            self.seed(charges, now)
            billable = True
        self._create(outcome, 1.0 if billable else 0.0, now + ttl)
        return billable

    async def get_many(self, keys: list[str]) -> list[float]:
        now = self._clock()
        return [self._value(key, now) or 0.0 for key in keys]

    def seed(self, counts: Iterable[Limit], now: float) -> None:
        """Add each count's cost as of moment ``now``: also how the event log is replayed at start-up."""
        self._add(counts, now)
        self._sweep(self._clock())

    def _add(self, counts: Iterable[Limit], now: float) -> tuple:
        """Add each count's cost as of ``now``; what was added, flat: (key, cost, key, cost, ...),
        what a reservation holds. One call per option a decision reserves, not one per counter."""
        values, held = self._values, []
        for count in counts:  # read by position (see ``_fit``)
            key, cost = count[0], count[2]
            value, expires = values.get(key, _ABSENT)
            if expires > now:
                values[key] = (value + cost, expires)
            else:
                self._create(key, cost, now + count[4])
            held += (key, cost)
        return tuple(held)

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

    async def assign(self, key: str, value: str, ttl: int) -> str:
        now = self._clock()
        kept = self._value(key, now)
        if kept is None:
            self._create(key, value, now + ttl)
            self._sweep(now)
            return value
        return kept

    def has(self, key: str) -> bool:
        """Whether ``key`` holds a value now (a replay asks if a hit was billed before the checkpoint)."""
        return self._value(key, self._clock()) is not None

    def _value(self, key: str, now: float) -> float | None:
        entry = self._values.get(key)
        return entry[0] if entry and entry[1] > now else None

    def _fit(self, limits: Iterable[Limit], now: float) -> bool:
        """Whether one more event keeps every counter within its limit: ``value + cost <= limit``,
        the rule the Redis store's Lua ``fit`` applies too. Amounts are whole numbers (spend in
        micro-units), so the comparison is exact. Bounded limits only (an option's checks are).

        A Limit is read by position, (key, limit, cost, event, ttl): unpacking a tuple subclass
        (or reading a NamedTuple's field by name) is not specialised, and made an iterator per
        counter."""
        values = self._values
        for limit in limits:
            value, expires = values.get(limit[0], _ABSENT)
            if (value if expires > now else 0.0) + limit[2] > limit[1]:
                return False
        return True

    def _release_due(self, now: float) -> None:
        """Give back what reservations past their hold time still hold (settled ones are gone),
        ``STEP`` of them per call: a busy second's answers all come due together."""
        if self._release_seconds and self._release_seconds[0] <= now:
            step = STEP
            while self._release_seconds and self._release_seconds[0] <= now:
                due = self._releasing[self._release_seconds[0]]
                while due and step:
                    self._unhold(self._values, self._reserved.pop(due.pop(), ()), now)
                    step -= 1
                if due:
                    return  # the rest at the next call
                del self._releasing[heapq.heappop(self._release_seconds)]

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
        """Drop the keys of every expiry minute that has passed by ``now`` (the clock's, not an
        event's), ``STEP`` of them per call: a busy minute's keys all expire together."""
        minute = int(now // 60)
        if self._swept_minute < minute:
            step = STEP
            while self._swept_minute < minute:
                due = self._expiring.get(self._swept_minute, [])
                while due and step:
                    key = due.pop()
                    entry = self._values.get(key)
                    if entry is not None and entry[1] <= now:
                        del self._values[key]
                    step -= 1
                if due:
                    return  # the rest at the next write
                self._expiring.pop(self._swept_minute, None)
                self._swept_minute += 1

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """Every key -> (value, expires_at), copied at once: what a checkpoint saves.

        Without what open reservations hold: reservations are not saved, so a restart must not
        keep their holds either (they would never be released, and their pixels charged again).
        """
        values, steps = self.capture()
        for _ in steps:
            pass
        return values

    def capture(self, step: int = STEP) -> tuple[dict[str, tuple[float, float]], Iterator[None]]:
        """``snapshot`` in slices, so that a checkpoint never stalls the event loop.

        The copy is taken at once, in C (a few ms per 100,000 keys), so it is one moment; it is
        complete once the returned steps are exhausted, each taking ``step`` open reservations'
        holds out of it (all of them in one Python pass took 350-800 ms on a busy server). The
        steps only touch the copy: anything may run between them.
        """
        values, holds, now = self._values.copy(), list(self._reserved.values()), self._clock()

        def steps() -> Iterator[None]:
            for start in range(0, len(holds), step):
                for held in holds[start:start + step]:
                    self._unhold(values, held, now)
                yield
        return values, steps()

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

    async def publish(self, feed: str, payload: bytes) -> None:
        pass  # one process shares nothing: its own change is already applied

    async def follow(self, feed: str, after: str) -> tuple[str, list[bytes]]:
        return after, []

    async def close(self) -> None:
        pass
