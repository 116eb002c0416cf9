"""Recency-decayed click popularity: the cold-start fallback and the "Take a Look!" strategy.

Each click adds ``exp((t - t0) / tau)`` to its item. Ranking items at any one moment only needs
these sums, since decaying them all to "now" multiplies every score by the same factor; ``t0``
is moved forward when the exponents grow large.
"""

from __future__ import annotations

import heapq
import math
import time

REBASE_AT = 500.0  # exponent above which the sums are rescaled, far from float overflow


class _Heats(dict):
    """Sums by item; an item never read nor clicked reads 0 without being added. Its lookups
    stay in C (``__getitem__`` as a sort key), where a Python call per item took about twice as
    long to order a widget's candidates."""

    def __missing__(self, item: str) -> float:
        return 0.0


class Popularity:
    def __init__(self, half_life_hours: float, top_size: int = 500, refresh_seconds: float = 2.0,
                 monotonic=time.monotonic) -> None:
        self._tau = half_life_hours * 3600 / math.log(2)
        self._t0: float | None = None
        self._scores = _Heats()
        self._top: list[str] = []
        self._top_size = top_size
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._stale = False
        self._ranked_at = -math.inf

    def add(self, item: str, ts: float, weight: float = 1.0) -> None:
        if self._t0 is None:
            self._t0 = ts
        exponent = (ts - self._t0) / self._tau
        if exponent > REBASE_AT:
            self._rebase(ts)
            exponent = 0.0
        self._scores[item] = self._scores.get(item, 0.0) + weight * math.exp(exponent)
        self._stale = True

    def _rebase(self, ts: float) -> None:
        factor = math.exp(-(ts - self._t0) / self._tau)
        self._scores = _Heats({k: v * factor for k, v in self._scores.items()})
        self._t0 = ts

    def top(self) -> list[str]:
        """Items by decayed popularity, best first; re-ranked at most every ``refresh_seconds``."""
        now = self._monotonic()
        if self._stale and now - self._ranked_at >= self._refresh:
            self._top = heapq.nlargest(self._top_size, self._scores, key=self._scores.__getitem__)
            self._stale = False
            self._ranked_at = now
        return self._top

    def hottest_first(self, items: list[str]) -> list[str]:
        """``items`` by heat, hottest first, ties in their given order (a stable sort). Heats are
        comparable between items at any one moment (not across rebases)."""
        scores = self._scores
        if not scores or scores.keys().isdisjoint(items):  # none read nor clicked yet: all tie
            return list(items)
        return sorted(items, key=scores.__getitem__, reverse=True)

    def __len__(self) -> int:
        return len(self._scores)
