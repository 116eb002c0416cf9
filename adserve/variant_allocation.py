"""Thompson allocation of a creative's variants (``variant_optimization: thompson``).

New readers are split by each variant's probability of having the best CTR (``abtest``), floored
at ``min_share``: in expectation what Thompson sampling does, but from weights recomputed at
most every ``REFRESH_SECONDS`` per creative (2-3 ms of quadrature), never per request.

A fixed split keeps a reader on one variant by hashing the reader; with moving weights a hash
would move readers too, so a reader's first variant is remembered in the state store
(``assign``: one atomic get-or-set, until the flight ends). The counts the weights come from
are the impressions and clicks that counted (billable), added to store counters as each hit
settles, so every replica reads the same numbers.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterable

from .abtest import Arm, allocation
from .ledger import EVENTS, Limit
from .model import Campaign, Creative, Variant
from .state import StateStore, StateUnavailable

REFRESH_SECONDS = 5.0
AFTER_FLIGHT = 7 * 86400  # counters and assignments outlive the flight by a week (late pixels, reports)


def count_key(creative_id: str, variant_id: str, kind: str) -> str:
    return f"ab:n:{creative_id}:{variant_id}:{kind}"


class VariantAllocation:
    """The adaptive creatives of one config: their current shares, assignments and counters."""

    def __init__(self, campaigns: Iterable[Campaign], state: StateStore,
                 clock: Callable[[], float] = time.time, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.state = state
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.floors: dict[str, float] = {}       # creative id -> min_share, for adaptive creatives only
        self._campaigns: dict[str, Campaign] = {}
        for campaign in campaigns:
            for creative in campaign.creatives:
                floor = campaign.thompson_floor(creative)
                if floor is not None and sum(v.weight > 0 for v in creative.variants) > 1:
                    self.floors[creative.id] = floor
                    self._campaigns[creative.id] = campaign
        self._shares: dict[str, tuple[float, list[float]]] = {}  # creative id -> (computed at, shares)

    async def variant(self, creative: Creative, reader: str | None, rng: random.Random) -> Variant:
        """The reader's remembered variant, else one drawn by the current shares (and remembered)."""
        shown = _shown(creative)
        drawn = rng.choices(shown, weights=await self.shares(creative))[0]
        if reader is None:  # nobody to remember (no id, or no consent): a fresh draw each time
            return drawn
        try:
            kept = await self.state.assign(f"ab:r:{creative.id}:{reader}", drawn.id, self._ttl(creative.id))
        except StateUnavailable:
            return drawn
        return next((v for v in shown if v.id == kept), drawn)  # a variant stopped since: a new draw

    async def shares(self, creative: Creative) -> list[float]:
        """Shares of the creative's shown variants (weight > 0), at most ``refresh_seconds`` old."""
        now = self.clock()
        known = self._shares.get(creative.id)
        if known is not None and now - known[0] < self.refresh_seconds:
            return known[1]
        shown = _shown(creative)
        current = known[1] if known else [1 / len(shown)] * len(shown)
        self._shares[creative.id] = (now, current)  # concurrent requests keep these meanwhile
        keys = [count_key(creative.id, v.id, kind) for v in shown for kind in EVENTS]
        try:
            counts = await self.state.get_many(keys)
        except StateUnavailable:
            return current
        arms = [Arm(int(counts[2 * i]), int(counts[2 * i + 1])) for i in range(len(shown))]
        current = allocation(arms, self.floors[creative.id])
        self._shares[creative.id] = (now, current)
        return current

    def counters(self, event: dict) -> tuple[Limit, ...]:
        """What a counted hit adds to its variant's counters (none for a fixed split)."""
        creative, variant = event.get("creative"), event.get("variant")
        if creative not in self.floors or not isinstance(variant, str) or event["type"] not in EVENTS:
            return ()
        return (Limit(count_key(creative, variant, event["type"]), None, 1, event["type"], self._ttl(creative)),)

    async def count(self, event: dict, ttl: int) -> None:
        """Add a counted, billable hit to its variant's counters, once per hit (``settle`` marks it).

        A store fault loses this one count, never the hit: the weights are an estimate.
        """
        counters = self.counters(event)
        if counters:
            try:
                await self.state.settle(f"ab:hit:{event['type']}:{event['token']}", ttl, None, counters)
            except StateUnavailable:
                pass

    def _ttl(self, creative_id: str) -> int:
        end = self._campaigns[creative_id].flight.end.timestamp()
        return max(int(end - self.clock()), 0) + AFTER_FLIGHT


def _shown(creative: Creative) -> list[Variant]:
    return [v for v in creative.variants if v.weight > 0]
