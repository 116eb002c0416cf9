"""The contract every state store keeps, and the walk both stores make to pick per need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..ledger import Limit


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
                     charges: tuple[Limit, ...], mark: tuple[str, str] | None = None) -> bool | None:
        """Confirm ``reservation`` if it is still held (and add the unbounded ``charges``, which
        it did not hold), else add all ``charges`` if they all fit.

        Whether the event is billable; remembered under ``outcome`` for ``ttl`` seconds, so a
        retried hit gets the same answer and moves nothing twice. With ``mark`` (a token's mark
        key, the attempt), first ``claim`` it in the same call (a pixel's one round trip to a
        shared store): None, and nothing settled, when another attempt holds it.
        """

    async def get_many(self, keys: list[str]) -> list[float]:
        """Current values (0 for missing or expired keys), in the order asked."""

    async def first_time(self, key: str, ttl: int) -> bool:
        """True exactly once per key within ``ttl`` seconds: deduplicates tracking tokens."""

    async def forget(self, key: str) -> None:
        """Drop a mark, e.g. a token whose event could not be written, so its retry counts."""

    async def assign(self, key: str, value: str, ttl: int) -> str:
        """The value kept under ``key``; ``value`` (kept for ``ttl`` seconds) when there is none.

        One atomic call, so two concurrent first visits of a reader keep the same variant.
        """

    async def open(self) -> bool:
        """Connect; True when the store holds nothing yet (fresh, or restarted without its data).

        A shared store says True to one process only, which is then to ``restore`` it; until that
        is done, it raises StateUnavailable in the others (limited campaigns are not served).
        """

    async def restore(self, replayed: Replayed) -> None:
        """Take counters and marks rebuilt from the event log."""

    async def publish(self, feed: str, payload: bytes) -> None:
        """Append a change every process sharing the store will read from ``follow``."""

    async def follow(self, feed: str, after: str) -> tuple[str, list[bytes]]:
        """The changes appended after position ``after`` ("0": all still kept), and the new position."""

    async def close(self) -> None:
        """Release connections."""


async def claim(store: StateStore, key: str, attempt: str, ttl: int) -> bool:
    """Whether ``attempt`` holds the mark ``key`` (kept ``ttl`` seconds): it set the mark now, or
    in an earlier call whose answer was lost (a shared store's reply after the wait), which the
    hit's reconcile repeats. One atomic get-or-set, so two attempts never both hold it."""
    return await store.assign(key, attempt, ttl) == attempt


def choose(needs: list[Iterable[Option | None]], taken: set[str],
           take: Callable[[Option], bool]) -> list[int | None]:
    """The walk ``reserve`` makes (the Redis store makes it in Lua, in the same order).

    ``take`` reserves an option not taken yet if its limits allow, and says whether it did: one
    call per option, as the walk is most of a light page's decision.
    """
    taken = set(taken)
    picks: list[int | None] = []
    for options in needs:
        pick = None
        index = 0
        for option in options:
            if option is CUT:
                return picks
            names = option.names
            if (not taken or taken.isdisjoint(names)) and take(option):  # a page's first need: nothing taken
                taken.update(names)
                pick = index
                break
            index += 1
        picks.append(pick)
    return picks
