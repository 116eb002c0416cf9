"""Which campaign, creative and variant fills each ad slot of a page.

Eligible means active, in flight, targeted, of a fitting size and platform, and allowed by caps,
budgets and pacing. The highest tier with an eligible campaign wins; inside it a weighted lottery
gives each campaign a share of weight x eCPM, drawn by rejection sampling so that a tier of
thousands costs a handful of checks. Variants are sticky per reader. A page never shows
the same campaign twice (nor, when the site asks, the same advertiser).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from .ledger import Ledger, Moment
from .model import TIERS, Campaign, Config, Creative, Variant
from .request import SlotRequest
from .state import StateStore
from .targeting import CompiledTargeting, platform_fits


@dataclass(frozen=True, eq=False)  # hashed by identity: draws are de-duplicated in a dict
class Candidate:
    campaign: Campaign
    creative: Creative
    tier: int
    score: float  # share in its tier's lottery: weight x eCPM
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


MIN_ECPM = 0.001  # a free (house) campaign still has a share in a tier of free campaigns
SCAN_LIMIT = 24   # groups up to this size are checked whole; larger ones are sampled first
DRAWS = 16        # weighted draws tried before a large group falls back to a full scan
DRAW_BATCH = 4    # draws checked together (one state read per batch)


class Group:
    """The candidates of one tier in one index bucket, with running score sums for draws."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates
        self.cumulative = list(itertools.accumulate(c.score for c in candidates))
        self.total = self.cumulative[-1] if candidates else 0.0

    def draw(self, point: float) -> Candidate:
        index = bisect.bisect_right(self.cumulative, point)
        return self.candidates[min(index, len(self.candidates) - 1)]


class Inventory:
    """The active campaigns of one config, indexed by size, then targeted section, then tier.

    A lookup reads the groups for the page's section and for untargeted campaigns, never the
    whole book; big groups are then sampled rather than scanned (see ``Decider``).
    """

    def __init__(self, config: Config) -> None:
        self.campaigns = {c.id: c for c in config.campaigns}
        lists: dict[tuple, list[Candidate]] = defaultdict(list)
        for campaign in config.campaigns:
            if campaign.status != "active":
                continue
            compiled = CompiledTargeting.compile(campaign.targeting)
            score = campaign.weight * max(ecpm(campaign), MIN_ECPM)
            for creative in campaign.creatives:
                candidate = Candidate(campaign, creative, TIERS.index(campaign.tier), score, compiled)
                for section in compiled.sections or (None,):
                    lists[(creative.size, section, candidate.tier)].append(candidate)
        self._index: dict[tuple[str, str | None], dict[int, Group]] = defaultdict(dict)
        for (size, section, tier), candidates in lists.items():
            self._index[(size, section)][tier] = Group(candidates)

    def lookup(self, sizes: tuple[str, ...], section: str | None) -> dict[int, list[Group]]:
        """Groups by tier for these sizes: untargeted ones and those aimed at ``section``."""
        by_tier: dict[int, list[Group]] = defaultdict(list)
        for size in sizes:
            for key in ((size, None), (size, section)) if section else ((size, None),):
                for tier, group in self._index.get(key, {}).items():
                    by_tier[tier].append(group)
        return by_tier


class _Page:
    """What one request has learned so far: targeting results, counter values, what it used."""

    def __init__(self, request: SlotRequest, moment: Moment, local: dt.datetime) -> None:
        self.request = request
        self.moment = moment
        self.local = local
        self.matched: dict[tuple, bool] = {}
        self.values: dict[str, float] = {}
        self.fetched: set[int] = set()
        self.campaigns: set[int] = set()
        self.advertisers: set[str] = set()


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
        moment = self.ledger.moment(self.clock())
        page = _Page(request, moment, moment.now.astimezone(self.ledger.tz))
        fills: dict[str, Fill | None] = {}
        for need in needs:
            chosen = None
            for _tier, groups in sorted(self.inventory.lookup(need.sizes, request.page.section).items()):
                chosen = await self._pick(groups, need.placement, page)
                if chosen is not None:
                    break
            fills[need.key] = None if chosen is None else Fill(
                chosen.campaign, chosen.creative, self.variant(chosen.creative, request.user_id))
            if chosen is not None:
                page.campaigns.add(chosen.campaign.id)
                if self.unique_advertiser:
                    page.advertisers.add(chosen.campaign.advertiser)
        return fills

    async def _pick(self, groups: list[Group], placement: str | None, page: _Page) -> Candidate | None:
        """A weighted choice among the eligible candidates of one tier.

        Large tiers use rejection sampling: draw by score from the whole tier and keep the first
        draw that is eligible, which picks each eligible candidate with exactly its share among
        the eligible ones, after checking a handful instead of all. Only when every draw is
        ineligible is the tier scanned whole.
        """
        size = sum(len(g.candidates) for g in groups)
        if size > SCAN_LIMIT:
            total = sum(g.total for g in groups)
            tried: set[Candidate] = set()
            for _ in range(DRAWS // DRAW_BATCH):
                draws = [c for c in dict.fromkeys(self._draw(groups, total) for _ in range(DRAW_BATCH))
                         if c not in tried]
                tried.update(draws)
                eligible = await self._eligible(draws, placement, page)
                if eligible:
                    return eligible[0]
        everyone = [c for g in groups for c in g.candidates]
        eligible = await self._eligible(everyone, placement, page)
        if not eligible:
            return None
        scores = [c.score for c in eligible]
        return self.rng.choices(eligible, weights=scores)[0] if sum(scores) > 0 else self.rng.choice(eligible)

    def _draw(self, groups: list[Group], total: float) -> Candidate:
        point = self.rng.random() * total
        for group in groups:
            if point < group.total:
                return group.draw(point)
            point -= group.total
        return groups[-1].draw(groups[-1].total)

    async def _eligible(self, candidates: list[Candidate], placement: str | None,
                        page: _Page) -> list[Candidate]:
        """Candidates that may serve now, in the given order (one state read for the lot)."""
        passed = [c for c in candidates if c.campaign.id not in page.campaigns
                  and c.campaign.advertiser not in page.advertisers
                  and self._static_ok(c, placement, page)]
        user = page.request.user_id
        new = {c.campaign.id: c.campaign for c in passed if c.campaign.id not in page.fetched}
        keys = [k for campaign in new.values() for k in self.ledger.keys(campaign, user, page.moment)]
        if keys:
            page.values.update(zip(keys, await self.state.get_many(keys)))
        page.fetched.update(new)
        return [c for c in passed if self.ledger.allows(c.campaign, page.values, user, page.moment)]

    def _static_ok(self, c: Candidate, placement: str | None, page: _Page) -> bool:
        """Flight, platform and targeting: the checks that need no counters (cached per page)."""
        key = (c.campaign.id, c.creative.id, placement)
        if key not in page.matched:
            flight = c.campaign.flight
            page.matched[key] = (flight.start <= page.moment.now < flight.end
                                 and platform_fits(c.creative.platform, page.request.device)
                                 and c.targeting.matches(page.request, placement, page.local))
        return page.matched[key]

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
