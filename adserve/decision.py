"""Which campaign, creative and variant fills each ad slot of a page.

Eligible means active, in flight, targeted, of a fitting size and platform, and allowed by caps,
budgets and pacing. The highest tier with an eligible campaign wins; inside it a weighted lottery
gives each campaign a share of weight x eCPM. Variants are sticky per reader. A page never shows
the same campaign twice (nor, when the site asks, the same advertiser).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from .ledger import Ledger
from .model import TIERS, Campaign, Config, Creative, Variant
from .request import SlotRequest
from .state import StateStore
from .targeting import CompiledTargeting, platform_fits


@dataclass(frozen=True)
class Candidate:
    campaign: Campaign
    creative: Creative
    tier: int
    ecpm: float
    targeting: CompiledTargeting


@dataclass(frozen=True)
class AdNeed:
    """One thing to fill: a display slot, or a sponsored position of a recs widget."""
    key: str
    sizes: tuple[str, ...]
    placement: str | None


@dataclass(frozen=True)
class Fill:
    campaign: Campaign
    creative: Creative
    variant: Variant


def ecpm(campaign: Campaign) -> float:
    """Expected revenue per 1000 impressions; CPC prices count through the expected CTR."""
    if campaign.price.model == "cpm":
        return campaign.price.amount
    return campaign.price.amount * campaign.expected_ctr * 1000.0


class Inventory:
    """The active campaigns of one config, indexed by size and then by targeted section.

    A lookup reads two short lists (untargeted, and targeted at the page's section) instead of
    scanning every campaign.
    """

    def __init__(self, config: Config) -> None:
        self.campaigns = {c.id: c for c in config.campaigns}
        self._index: dict[str, dict[str | None, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
        for campaign in config.campaigns:
            if campaign.status != "active":
                continue
            compiled = CompiledTargeting.compile(campaign.targeting)
            for creative in campaign.creatives:
                candidate = Candidate(campaign, creative, TIERS.index(campaign.tier), ecpm(campaign),
                                      compiled)
                for section in compiled.sections or (None,):
                    self._index[creative.size][section].append(candidate)

    def lookup(self, size: str, section: str | None) -> list[Candidate]:
        by_section = self._index.get(size)
        if not by_section:
            return []
        anywhere = by_section.get(None, [])
        return anywhere + by_section.get(section, []) if section is not None else anywhere


class Decider:
    def __init__(self, inventory: Inventory, ledger: Ledger, state: StateStore,
                 unique_advertiser: bool = False, rng: random.Random | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.inventory = inventory
        self.ledger = ledger
        self.state = state
        self.unique_advertiser = unique_advertiser
        self.rng = rng or random.Random()
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    async def decide(self, request: SlotRequest, needs: list[AdNeed]) -> dict[str, Fill | None]:
        now = self.clock()
        local = now.astimezone(self.ledger.tz)
        matched: dict[int, bool] = {}
        pools = [[c for size in need.sizes
                  for c in self.inventory.lookup(size, request.page.section)
                  if self._static_ok(c, request, need.placement, now, local, matched)]
                 for need in needs]
        campaigns = {c.campaign.id: c.campaign for pool in pools for c in pool}
        keys = [k for c in campaigns.values() for k in self.ledger.keys(c, request.user_id, now)]
        values = dict(zip(keys, await self.state.get_many(keys))) if keys else {}
        allowed = {cid for cid, c in campaigns.items()
                   if self.ledger.allows(c, values, request.user_id, now)}
        used_campaigns: set[int] = set()
        used_advertisers: set[str] = set()
        fills: dict[str, Fill | None] = {}
        for need, pool in zip(needs, pools):
            eligible = [c for c in pool if c.campaign.id in allowed
                        and c.campaign.id not in used_campaigns
                        and c.campaign.advertiser not in used_advertisers]
            fill = self._choose(eligible, request.user_id)
            fills[need.key] = fill
            if fill is not None:
                used_campaigns.add(fill.campaign.id)
                if self.unique_advertiser:
                    used_advertisers.add(fill.campaign.advertiser)
        return fills

    def _static_ok(self, c: Candidate, request: SlotRequest, placement: str | None,
                   now: dt.datetime, local: dt.datetime, matched: dict) -> bool:
        flight = c.campaign.flight
        if not (flight.start <= now < flight.end) or not platform_fits(c.creative.platform,
                                                                        request.device):
            return False
        key = (c.campaign.id, placement)
        if key not in matched:
            matched[key] = c.targeting.matches(request, placement, local)
        return matched[key]

    def _choose(self, eligible: list[Candidate], user: str | None) -> Fill | None:
        if not eligible:
            return None
        top = min(c.tier for c in eligible)
        pool = [c for c in eligible if c.tier == top]
        scores = [c.campaign.weight * c.ecpm for c in pool]
        if sum(scores) <= 0:
            scores = [c.campaign.weight for c in pool]
        if sum(scores) <= 0:
            scores = [1.0] * len(pool)
        chosen = self.rng.choices(pool, weights=scores)[0]
        return Fill(chosen.campaign, chosen.creative, self.variant(chosen.creative, user))

    def variant(self, creative: Creative, user: str | None) -> Variant:
        """Weighted choice, sticky per reader: the same reader always sees the same variant."""
        variants = creative.variants
        if len(variants) == 1:
            return variants[0]
        point = _unit_hash(f"{user}:{creative.id}") if user else self.rng.random()
        total = sum(v.weight for v in variants)
        cumulative = 0.0
        for v in variants:
            cumulative += v.weight / total
            if point < cumulative:
                return v
        return variants[-1]


def _unit_hash(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
