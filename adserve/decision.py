"""Which campaign, creative and variant fills each ad slot of a page.

Eligible means active, in flight, targeted, of a fitting size and platform, and allowed by caps,
budgets and pacing. The highest tier with an eligible campaign wins; inside it a weighted lottery
gives each campaign a share of weight x eCPM (however many creatives it has), drawn by rejection
sampling so that a tier of thousands costs a handful of checks; the drawn campaign's creatives
that fit the slot share its draws by their own weights. Variants are sticky per reader. A page never shows
the same campaign twice (nor, when the site asks, the same advertiser).

Flight, platform and targeting depend on the page context and the time, never on the reader,
so their outcome is kept per context until a flight or daypart window of a candidate starts or
ends: the next reader of that article only draws and reads counters.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from .ledger import Ledger, Moment
from .model import TIERS, Campaign, Config, Creative, Variant
from .request import SlotRequest
from .state import StateStore
from .targeting import CompiledTargeting, platform_fits


@dataclass(eq=False, slots=True)  # hashed by identity: draws are de-duplicated in a dict
class Candidate:
    """One campaign in a context's lottery, with its creatives that fit the slot there.

    The lottery draws campaigns, not creatives, so a campaign's share does not grow with the
    number of creatives or sizes it brings; its creatives then share its draws by their weights.
    """
    campaign: Campaign
    creatives: tuple[Creative, ...]
    score: float  # share in its tier's lottery: weight x eCPM

    def creative(self, rng: random.Random) -> Creative:
        if len(self.creatives) == 1:
            return self.creatives[0]
        return rng.choices(self.creatives, weights=[c.weight for c in self.creatives])[0]


@dataclass(frozen=True, eq=False)  # hashed by identity: a context's checks are kept per listing
class Listing:
    """An active campaign as the inventory files it, under each size it has a creative of."""
    campaign: Campaign
    tier: int
    targeting: CompiledTargeting
    flight: tuple[float, float]  # start and end, Unix seconds
    whole: Candidate             # with every creative: what most contexts draw, built once


@dataclass(slots=True)
class AdNeed:
    """One thing to fill: a display slot, or a sponsored position of a recs widget."""
    key: str
    sizes: tuple[str, ...]
    placement: str | None


@dataclass(slots=True)
class Fill:
    campaign: Campaign
    creative: Creative
    variant: Variant


def ecpm(campaign: Campaign) -> float:
    """Expected revenue per 1000 impressions; CPC prices count through the expected CTR."""
    amount = float(campaign.price.amount)
    if campaign.price.model == "cpm":
        return amount
    return amount * campaign.expected_ctr * 1000.0


MIN_ECPM = 0.001  # a free (house) campaign still has a share in a tier of free campaigns
MAX_BATCH = 8     # draws per counter read double (1, 2, 4, 8); then the tier is checked whole
CONTEXTS = 8192   # page contexts whose targeting outcome is kept (oldest dropped first)


class Group:
    """The targeted candidates of one tier for one context, with running score sums for draws."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates
        self.cumulative = list(itertools.accumulate(c.score for c in candidates))
        self.total = self.cumulative[-1] if candidates else 0.0

    def draw(self, rng: random.Random, n: int) -> list[Candidate]:
        """``n`` weighted draws with repeats dropped, in draw order."""
        last = len(self.candidates) - 1
        drawn = [self.candidates[min(bisect.bisect_right(self.cumulative, rng.random() * self.total), last)]
                 for _ in range(n)]
        return drawn if n == 1 else list(dict.fromkeys(drawn))


class Inventory:
    """The active campaigns of one config, indexed by size, then targeted section, then tier.

    A lookup reads the lists for the page's section and for untargeted campaigns, never the
    whole book. Weight 0 (of a campaign or a creative) is never filed: it never serves.
    """

    def __init__(self, config: Config) -> None:
        self.campaigns = {c.id: c for c in config.campaigns}
        self._index: dict[tuple[str, str | None], dict[int, list[tuple[Listing, Creative]]]] = (
            defaultdict(lambda: defaultdict(list)))
        self.reads_url = False  # whether any targeting looks at the page URL
        for campaign in config.campaigns:
            if campaign.status != "active" or campaign.weight <= 0:
                continue
            compiled = CompiledTargeting.compile(campaign.targeting)
            self.reads_url |= compiled.url_pattern is not None
            shown = tuple(c for c in campaign.creatives if c.weight > 0)
            listing = Listing(campaign, TIERS.index(campaign.tier), compiled,
                              (campaign.flight.start.timestamp(), campaign.flight.end.timestamp()),
                              Candidate(campaign, shown, campaign.weight * max(ecpm(campaign), MIN_ECPM)))
            for creative in shown:
                for section in compiled.sections or (None,):
                    self._index[(creative.size, section)][listing.tier].append((listing, creative))

    def lookup(self, sizes: tuple[str, ...],
               section: str | None) -> dict[int, list[tuple[Listing, Creative]]]:
        """Creatives by tier for these sizes: of untargeted campaigns and those aimed at ``section``."""
        by_tier: dict[int, list[tuple[Listing, Creative]]] = defaultdict(list)
        for size in sizes:
            for key in ((size, None), (size, section)) if section else ((size, None),):
                for tier, listed in self._index.get(key, {}).items():
                    by_tier[tier].extend(listed)
        return by_tier


class _Page:
    """What one request has learned so far: campaign limits, counter values, campaigns used."""

    def __init__(self, request: SlotRequest, moment: Moment) -> None:
        self.request = request
        self.reader = request.consent.ads_reader(request.user_id)
        self.moment = moment
        self.now = moment.now.timestamp()  # the Moment's second: flights need no finer
        self.local = moment.local
        self.limits: dict[int, list[tuple[str, float]] | None] = {}  # campaign id -> Ledger.limits
        self.values: dict[str, float] = {}
        self.campaigns: set[int] = set()
        self.advertisers: set[str] = set()

    def open_to(self, campaign: Campaign) -> bool:
        """Not shown on this page yet (nor its advertiser, when the site asks)."""
        return campaign.id not in self.campaigns and campaign.advertiser not in self.advertisers

    def within_limits(self, campaign: Campaign) -> bool:
        limits = self.limits[campaign.id]
        if limits is None:
            return False
        for key, limit in limits:
            if self.values[key] >= limit:
                return False
        return True


@dataclass(frozen=True)
class _Targeted:
    """The candidates that pass flight, platform and targeting in one context, one group per tier."""
    since: float          # Unix seconds: when it was worked out (a clock set back invalidates it)
    until: float          # Unix seconds: the next flight or daypart edge of a candidate
    tiers: tuple[Group, ...]  # best tier first


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
        self._contexts: dict[tuple, _Targeted] = {}

    async def decide(self, request: SlotRequest, needs: list[AdNeed]) -> dict[str, Fill | None]:
        moment = self.ledger.moment(self.clock())
        page = _Page(request, moment)
        fills: dict[str, Fill | None] = {}
        for need in needs:
            chosen = None
            for group in self._targeted(need, page).tiers:
                chosen = await self._pick(group, page)
                if chosen is not None:
                    break
            if chosen is None:
                fills[need.key] = None
            else:
                creative = chosen.creative(self.rng)
                fills[need.key] = Fill(chosen.campaign, creative, self.variant(creative, page.reader))
                page.campaigns.add(chosen.campaign.id)
                if self.unique_advertiser:
                    page.advertisers.add(chosen.campaign.advertiser)
        return fills

    def _targeted(self, need: AdNeed, page: _Page) -> _Targeted:
        """The context's targeting outcome, kept until a candidate's flight or daypart edge.

        The context is everything targeting reads: sizes, placement, section, keywords, URL
        (when some campaign targets URLs), device and country. Readers and counters are not.
        """
        request = page.request
        key = (need.sizes, need.placement, request.page.section, request.page.keywords,
               request.page.url if self.inventory.reads_url else None, request.device, request.country)
        known = self._contexts.get(key)
        if known is not None and known.since <= page.now < known.until:
            return known
        if known is None and len(self._contexts) >= CONTEXTS:
            del self._contexts[next(iter(self._contexts))]
        edges = [math.inf]
        tiers = []
        for _tier, listed in sorted(self.inventory.lookup(need.sizes, request.page.section).items()):
            fitting: dict[Listing, list[Creative] | None] = {}  # None: the campaign does not match
            for listing, creative in listed:
                if listing not in fitting:
                    start, end = listing.flight
                    edges += [edge for edge in (start, end) if edge > page.now]
                    if listing.targeting.dayparts:
                        edges.append(listing.targeting.daypart_change(page.local))
                    fitting[listing] = [] if start <= page.now < end and listing.targeting.matches(
                        request, need.placement, page.local) else None
                creatives = fitting[listing]
                if creatives is not None and platform_fits(creative.platform, request.device):
                    creatives.append(creative)
            passed = [listing.whole if len(creatives) == len(listing.whole.creatives)
                      else Candidate(listing.campaign, tuple(creatives), listing.whole.score)
                      for listing, creatives in fitting.items() if creatives]
            if passed:
                tiers.append(Group(passed))
        self._contexts[key] = _Targeted(page.now, min(edges), tuple(tiers))
        return self._contexts[key]

    async def _pick(self, group: Group, page: _Page) -> Candidate | None:
        """A weighted choice among the candidates of one tier that counters and the page allow.

        Rejection sampling: draw by score and keep the first draw that is allowed, which picks
        each allowed candidate with exactly its share among the allowed ones, after reading the
        counters of a handful instead of all. Only when every draw is refused is the rest of the
        tier checked whole.
        """
        tried: set[Candidate] = set()
        batch = 1  # doubles: one counter read usually settles it, a refusing tier costs few reads
        while batch <= MAX_BATCH and group.total > 0:
            draws = [c for c in group.draw(self.rng, batch) if c not in tried]
            tried.update(draws)
            batch *= 2
            allowed = await self._allowed(draws, page)
            if allowed:
                return allowed[0]
            if len(tried) == len(group.candidates):
                return None
        allowed = await self._allowed([c for c in group.candidates if c not in tried], page)
        if not allowed:
            return None
        scores = [c.score for c in allowed]
        return self.rng.choices(allowed, weights=scores)[0] if sum(scores) > 0 else self.rng.choice(allowed)

    async def _allowed(self, candidates: list[Candidate], page: _Page) -> list[Candidate]:
        """Candidates that the page, caps, budgets and pacing allow, in the given order.

        One state read for the lot, and none for a campaign this page has read before.
        """
        passed = [c for c in candidates if page.open_to(c.campaign)]
        unread = {c.campaign.id: c.campaign for c in passed if c.campaign.id not in page.limits}
        if unread:
            keys = []
            for campaign_id, campaign in unread.items():
                limits = page.limits[campaign_id] = self.ledger.limits(campaign, page.reader, page.moment)
                keys += [key for key, _ in limits or ()]
            if keys:
                page.values.update(zip(keys, await self.state.get_many(keys)))
        return [c for c in passed if page.within_limits(c.campaign)]

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
