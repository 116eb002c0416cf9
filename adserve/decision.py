"""Which campaign, creative and variant fills each ad slot of a page.

Eligible means active, in flight, targeted, of a fitting size and platform, and allowed by caps,
budgets and pacing. The highest tier with an eligible campaign wins; inside it a weighted lottery
gives each campaign a share of weight x eCPM (however many creatives it has), drawn by rejection
sampling so that a tier of thousands costs a handful of checks; the drawn campaign's creatives
that fit the slot share its draws by their own weights. Variants are sticky per reader
(split by weight, or by Thompson allocation: ``variant_allocation.py``). A page never shows
the same campaign twice (nor, when the site asks, the same advertiser).

Flight, platform and targeting depend on the page context and the time, never on the reader.
The targeting index finds a context's campaigns in time that grows with the matches, not the
book; the outcome is also kept per context (least recently used dropped) until a flight or
daypart window of a candidate starts or ends: the next reader of that article only draws and
reads counters.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import itertools
import math
import random
import secrets
import weakref
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from .ledger import UNBOUNDED, Ledger, Moment, bounded, spend_micros
from .model import TIERS, Campaign, Config, Creative, Variant
from .request import SlotRequest
from .state import CUT, Option, StateStore, claim
from .targeting import CompiledTargeting, Context, Entry, TargetingIndex, platform_fits
from .variant_allocation import VariantAllocation


@dataclass(eq=False, slots=True)  # hashed by identity: draws are de-duplicated in a dict
class Candidate:
    """One campaign in a context's lottery, with its creatives that fit the slot there.

    The lottery draws campaigns, not creatives, so a campaign's share does not grow with the
    number of creatives or sizes it brings; its creatives then share its draws by their weights.
    """
    campaign: Campaign
    creatives: tuple[Creative, ...]
    score: float  # share in its tier's lottery: weight x eCPM
    # what a decider's ``_option`` keeps of the campaign while its bounds hold (``Decider._known``):
    # here, not in a dict by campaign id, as a big book's walk reaches a cold candidate anyway
    # and would then read its campaign, the id and the dict's slots (each one more cache miss)
    kept: tuple | None = None
    # (creative, variant) when it brings one creative of one variant, as most do: a fill then
    # reads neither the creative's fields nor its list of variants (cold in a big book)
    only: tuple[Creative, Variant] | None = field(init=False)

    def __post_init__(self) -> None:
        single = len(self.creatives) == 1 and len(self.creatives[0].variants) == 1
        self.only = (self.creatives[0], self.creatives[0].variants[0]) if single else None

    def creative(self, rng: random.Random) -> Creative:
        if len(self.creatives) == 1:
            return self.creatives[0]
        return rng.choices(self.creatives, weights=[c.weight for c in self.creatives])[0]


@dataclass(frozen=True, slots=True)
class Listing:
    """An active campaign as the inventory files it."""
    campaign: Campaign
    tier: int
    whole: Candidate             # with every creative: what most contexts draw, built once
    uniform: bool                # one size, every platform: wherever it matches, it is ``whole``

    def fitting(self, sizes: tuple[str, ...], device: str | None) -> Candidate | None:
        """The campaign with its creatives that fit the slot and the device (None: none fits)."""
        fitting = tuple(c for c in self.whole.creatives if c.size in sizes and platform_fits(c.platform, device))
        if len(fitting) == len(self.whole.creatives):
            return self.whole
        return Candidate(self.campaign, fitting, self.whole.score) if fitting else None


@dataclass(slots=True)
class AdNeed:
    """One thing to fill: a display slot, or a sponsored position of a recs widget."""
    key: str
    sizes: tuple[str, ...]
    placement: str | None


class Fill(NamedTuple):
    """What fills one need (a tuple: made for every ad answered)."""
    campaign: Campaign
    creative: Creative
    variant: Variant
    reservation: str | None = None  # what the impression pixel confirms (its token carries it)


def ecpm(campaign: Campaign) -> float:
    """Expected revenue per 1000 impressions; CPC prices count through the expected CTR."""
    amount = float(campaign.price.amount)
    if campaign.price.model == "cpm":
        return amount
    return amount * campaign.expected_ctr * 1000.0


MIN_ECPM = 0.001  # a free (house) campaign still has a share in a tier of free campaigns
WHOLE_TIER = 8    # a tier this small is offered whole, in a weighted random order
DRAWS = 8         # weighted draws offered from a bigger tier; if all are refused, it is offered whole
CONTEXTS = 8192   # page contexts whose targeting outcome is kept (least recently used dropped first)
HELD_BYTES = 64 << 20  # and what they may hold, roughly (``_held``): 8,192 of ~500 candidates each fit
# _new(Option, (...)): an Option, Fill or Context without NamedTuple's Python-level __new__ (a page
# makes several); called directly, not through a partial, which concatenated its arguments into
# one more tuple on every call
_new = tuple.__new__
_NEVER = object()  # what a need's options never are: they end with StopIteration
ROWS = 64         # (sizes, device) pairs whose candidates the inventory keeps
_UNSEEN, _UNFIT, _FITS = 0, 1, 2  # a listing's kind in a row: not worked out, no creative fits, a candidate


class Group:
    """The targeted candidates of one tier for one context, with running score sums for draws.

    The inventory's groups gather their candidates from its row when first used: a page mostly
    draws from its best tier only, and in a book of 10,000 touching each of the hundreds of
    candidates of the tiers below (cold in memory) cost more than the rest of the lookup. Until
    then a kept context holds arrays only (the sums an ``array('d')``), which the cyclic garbage
    collector does not walk item by item.
    """
    __slots__ = ("_candidates", "_positions", "cumulative", "total", "whole", "last")

    def __init__(self, candidates: Sequence[Candidate], scores: np.ndarray | None = None,
                 positions: np.ndarray | None = None) -> None:
        """``scores``: the candidates' scores in an array, when the caller has them so;
        ``positions``: the candidates are ``candidates[positions]``, gathered when first used."""
        self._candidates, self._positions = candidates, positions
        if scores is None:
            scores = np.array([c.score for c in self.candidates], dtype=float)
        # summed in order, as ``itertools.accumulate`` does: the same floats
        self.cumulative = array("d", np.add.accumulate(scores).tobytes())
        self.total = self.cumulative[-1] if self.cumulative else 0.0
        self.whole = len(self.cumulative) <= WHOLE_TIER or self.total <= 0  # offered whole, never drawn
        # where a draw rounded onto the top of the sums lands: the last candidate with a score
        self.last = len(self.cumulative) - 1
        if self.last > 0 and not scores[-1] > 0:
            scored = np.flatnonzero(scores > 0)
            self.last = int(scored[-1]) if len(scored) else self.last

    def gathered(self) -> Sequence[Candidate]:
        """The candidates, gathered from the row on the first call. A method for the walk: a
        property's read costs a call from C (~500 instructions in CPython 3.11), two a page."""
        if self._positions is not None:
            self._candidates, self._positions = self._candidates[self._positions].tolist(), None
        return self._candidates

    candidates = property(gathered)

    def draw(self, rng: random.Random, n: int) -> Iterator[Candidate]:
        """``n`` weighted draws with repeats dropped, in draw order; lazily, so a store that
        takes the first draw that fits (the embedded one) stops drawing there."""
        first = self._drawn(rng)
        yield self.gathered()[first]
        yield from self._draws(rng, n - 1, first)

    def order(self, rng: random.Random) -> Iterator[Candidate]:
        """All candidates in a weighted random order (zero weights last); lazily, as the
        embedded store usually takes the first.

        The first is one weighted draw; the rest follow in an exponential race (each one's time
        exponential at its score's rate, the earliest first). Racing them all is the same
        distribution, since the race is memoryless, but costs a logarithm per candidate where
        a page mostly needs one draw. (Efraimidis-Spirakis keys ``random() ** (1 / score)``
        are the same race, but underflow to 0.0 for scores near the 0.001 floor.)
        """
        candidates = self.gathered()
        if candidates:
            first = self.first(rng, True)
            yield candidates[first]
            yield from self.rest(rng, True, first)

    def first(self, rng: random.Random, whole: bool) -> int:
        """The position of the first candidate of ``order`` (``whole``) or ``draw``."""
        if whole and (len(self.cumulative) < 2 or self.total <= 0):  # nothing to order, or every weight zero
            return 0
        return self._drawn(rng)

    def rest(self, rng: random.Random, whole: bool, first: int) -> Iterable[Candidate]:
        """What follows the candidate at ``first`` in ``order`` (``whole``) or in ``DRAWS`` draws."""
        if not whole:
            return self._draws(rng, DRAWS - 1, first)
        candidates = self.gathered()
        rest = candidates[:first] + candidates[first + 1:]
        if len(rest) > 1 and self.total > 0:
            times = []  # a loop, not a comprehension (see ``Decider.decide``)
            for c in rest:
                times.append(-math.log(1.0 - rng.random()) / c.score if c.score > 0 else math.inf)
            rest = list(map(rest.__getitem__, sorted(range(len(rest)), key=times.__getitem__)))
        return rest

    def _draws(self, rng: random.Random, n: int, first: int) -> Iterator[Candidate]:
        candidates = self.gathered()
        drawn = {candidates[first]}
        for _ in range(n):
            candidate = candidates[self._drawn(rng)]
            if candidate not in drawn:
                drawn.add(candidate)
                yield candidate

    def _drawn(self, rng: random.Random) -> int:
        """The position of one weighted draw: each candidate with its share of the total."""
        position = bisect.bisect_right(self.cumulative, rng.random() * self.total)
        return position if position < self.last else self.last  # not min(): ~1,000 instructions a call


class Inventory:
    """The active campaigns of one config, in a targeting index.

    A lookup asks the index which campaigns match a context: it never reads the whole book.
    Weight 0 (of a campaign or a creative) is never filed: it never serves.
    """

    def __init__(self, config: Config) -> None:
        self.campaigns = {c.id: c for c in config.campaigns}
        self._listings: list[Listing] = []  # best tier first, so the index's matches come in tiers
        entries: list[Entry] = []  # the index's, in the same order
        for campaign in sorted(config.campaigns, key=lambda c: TIERS.index(c.tier)):
            if campaign.status != "active" or campaign.weight <= 0:
                continue
            shown = tuple(c for c in campaign.creatives if c.weight > 0)
            self._listings.append(Listing(
                campaign, TIERS.index(campaign.tier),
                Candidate(campaign, shown, campaign.weight * max(ecpm(campaign), MIN_ECPM)),
                len({c.size for c in shown}) == 1 and all(c.platform == "ANY" for c in shown)))
            entries.append(Entry(CompiledTargeting.compile(campaign.targeting), frozenset(c.size for c in shown),
                                 (campaign.flight.start.timestamp(), campaign.flight.end.timestamp())))
        self._index = TargetingIndex(entries)
        self.reads_url = any(entry.rules.urls for entry in entries)  # else the URL is left out of contexts
        self._scores = np.array([listing.whole.score for listing in self._listings], dtype=float)
        # where each tier's listings end, by position: a lookup splits its matches there
        self._tier_ends = np.array([i for i in range(1, len(self._listings) + 1) if i == len(self._listings)
                                    or self._listings[i].tier != self._listings[i - 1].tier], dtype=np.intp)
        # per (sizes, device): each listing's candidate there, and whether it ``_FITS``, has no
        # creative that fits (``_UNFIT``) or is not worked out yet (``_UNSEEN``), filled in as contexts meet it
        self._template = (np.array([listing.whole if listing.uniform else None for listing in self._listings],
                                   dtype=object),
                          np.array([_FITS if listing.uniform else _UNSEEN for listing in self._listings], dtype=np.uint8))
        self._rows: dict[tuple[tuple[str, ...], str | None], tuple[np.ndarray, np.ndarray]] = {}
        # rows dropped but still alive (kept contexts' groups gather from them): the id of a weak
        # reference to each -> it and the row's bytes; their sum the decider's kept contexts count
        self._dropped: dict[int, tuple[weakref.ref, int]] = {}
        self.dropped_bytes = 0

    def lookup(self, context: Context, now: float, local: dt.datetime) -> tuple[tuple[Group, ...], float]:
        """The candidates of ``context`` at ``now``, one group per tier (best first, empty tiers
        left out), and until when they hold: the next flight or daypart edge of a campaign the
        context targets.

        A listing's candidate depends only on the slot's sizes and the device: it is worked out
        once per (sizes, device) and kept in that pair's row, so a context that matches hundreds
        of campaigns costs a few numpy steps over its matches, not a Python step per match.
        """
        matched, until = self._index.matches(context, now, local)
        candidates, kinds = self._row(context.sizes, context.device)
        if kinds[matched].tobytes().count(_FITS) < len(matched):  # some not worked out, or without a fit
            for i in matched[kinds[matched] == _UNSEEN].tolist():
                candidate = candidates[i] = self._listings[i].fitting(context.sizes, context.device)
                kinds[i] = _UNFIT if candidate is None else _FITS
            matched = matched[kinds[matched] == _FITS]
        scores = self._scores[matched]
        tiers = []
        start = 0
        for stop in matched.searchsorted(self._tier_ends).tolist():
            if stop > start:
                tiers.append(Group(candidates, scores[start:stop], matched[start:stop]))
                start = stop
        return tuple(tiers), until

    def _row(self, sizes: tuple[str, ...], device: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Every listing's candidate for ``sizes`` on ``device`` and its kind (see ``_template``);
        at most ``ROWS`` pairs are kept, the oldest dropped, as requests choose the sizes."""
        row = self._rows.get((sizes, device))
        if row is None:
            if len(self._rows) >= ROWS:
                candidates = self._rows.pop(next(iter(self._rows)))[0]
                dropped = weakref.ref(candidates, self._gone)
                self._dropped[id(dropped)] = dropped, candidates.nbytes
                self.dropped_bytes += candidates.nbytes
            row = self._rows[sizes, device] = (self._template[0].copy(), self._template[1].copy())
        return row

    def _gone(self, dropped: weakref.ref) -> None:
        """A dropped row is gone (the last kept context holding it was dropped)."""
        self.dropped_bytes -= self._dropped.pop(id(dropped))[1]


class _Page:
    """What one request has learned so far: campaign options, names taken, tiers to ask whole."""
    __slots__ = ("request", "reader", "moment", "now", "local", "reservation", "options", "era", "taken",
                 "whole")

    def __init__(self, request: SlotRequest, moment: Moment, reservation: str, era: object) -> None:
        self.request = request
        self.reader = request.consent.ads_reader(request.user_id)
        self.moment = moment
        self.now = moment.seconds  # the Moment's second: flights need no finer
        self.local = moment.local
        self.reservation = reservation  # prefix of this page's reservation ids
        self.options: dict[str, Option | None] = {}  # campaign id as text -> what the store sees, if per page
        self.era = era  # the decider's local hour: what its candidates' kept entries are good for
        self.taken: set[str] = set()  # campaigns (and advertisers, when the site asks) on the page
        self.whole: set[tuple[int, int]] = set()  # (need, tier) whose draws were all refused


@dataclass(frozen=True, slots=True)
class _Targeted:
    """The candidates that pass flight, platform and targeting in one context, one group per tier."""
    since: float          # Unix seconds: when it was worked out (a clock set back invalidates it)
    until: float          # Unix seconds: the next flight or daypart edge of a candidate
    tiers: tuple[Group, ...]  # best tier first
    held: int             # roughly the bytes it holds, key included (``_held``)


class Decider:
    def __init__(self, inventory: Inventory, ledger: Ledger, state: StateStore,
                 unique_advertiser: bool = False, rng: random.Random | None = None,
                 clock: Callable[[], dt.datetime] | None = None, hold_seconds: float = 300.0) -> None:
        self.inventory = inventory
        self.ledger = ledger
        self.state = state
        self.unique_advertiser = unique_advertiser
        self.rng = rng or random.Random()
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._contexts: OrderedDict[Context, _Targeted] = OrderedDict()  # least recently used first
        self._held = 0  # what they hold, in bytes: the sum of their ``held``
        self.hold_seconds = hold_seconds  # how long an unconfirmed reservation holds its counters
        self._page_prefix = secrets.token_hex(4)  # reservation ids stay unique across replicas
        self._pages = itertools.count()
        self._moment = None  # the ledger moment of the newest page
        self._hour = None  # its local hour (the moment's hour bucket)
        self._era = object()  # this decider's local hour, as entries kept on candidates name it (``_known``)
        self._splits: dict[int, tuple[Creative, list[float], int]] = {}  # id(creative) -> it, running shares, last
        self.allocation = VariantAllocation(inventory.campaigns.values(), state, lambda: self.clock().timestamp())

    async def decide(self, request: SlotRequest, needs: list[AdNeed]) -> dict[str, Fill | None]:
        """Fill every need; the store reserves what the picks will count, usually in one call.

        Each need offers the store its candidates ranked: tier by tier, in a weighted random
        order (the whole tier when small, a few draws of a big one). The store takes, per need,
        the first that fits the page and its limits. Only when a big tier refused all its draws
        is the rest of the page asked again, with that tier whole.
        """
        moment = self.ledger.moment(self.clock())
        if moment is not self._moment:
            self._moment = moment
            if moment.buckets["hour"] != self._hour:  # a new local hour: pages of the last one keep theirs
                self._hour, self._era = moment.buckets["hour"], object()
        page = _Page(request, moment, f"{self._page_prefix}{next(self._pages):x}.", self._era)
        # loops, not comprehensions: a comprehension is a function made per call, and the
        # variables it reads become cells of this one (CPython 3.11)
        tiers, previous = [], None
        for need in needs:
            if previous is None or need.sizes is not previous.sizes or need.placement is not previous.placement:
                found = self._targeted(need, page).tiers  # else the same context: a widget's positions
            tiers.append(found)
            previous = need
        fills: dict[str, Fill | None] = {}
        rng, allocation, taken = self.rng, self.allocation, page.taken
        done = 0
        while done < len(needs):
            offered: list[list[tuple]] = []
            options = []
            for index in range(done, len(needs)):
                offered.append(seen := [])
                options.append(iter(functools.partial(self._next_option, index, tiers[index], page, seen,
                                                      [None, None]), _NEVER))
            picks = await self.state.reserve(options, taken, self.hold_seconds)
            for need, seen, pick in zip(needs[done:], offered, picks):
                if pick is None:
                    fills[need.key] = None
                    continue
                chosen, option = seen[pick]
                if chosen.only is not None:  # most candidates: nothing to draw, split nor allocate
                    creative, variant = chosen.only
                else:
                    creative = chosen.creatives[0] if len(chosen.creatives) == 1 else chosen.creative(rng)
                    if len(creative.variants) == 1:  # nothing to split (nor to allocate)
                        variant = creative.variants[0]
                    elif creative.id in allocation.floors:
                        variant = await allocation.variant(creative, page.reader, rng)
                    else:
                        variant = self.variant(creative, page.reader)
                fills[need.key] = _new(Fill, (chosen.campaign, creative, variant, option.reservation))
                taken.update(option.names)
            done += len(picks)
            if done < len(needs):
                page.whole.add((done, next(tier for tier, option in offered[len(picks)] if option is CUT)))
        return fills

    def _next_option(self, index: int, tiers: tuple[Group, ...], page: _Page, seen: list[tuple],
                     walk: list) -> Option | None:
        """Need ``index``'s next option, as ``_offer`` ranks them (StopIteration: no more).

        The first is worked out here, and ``_offer`` takes over only after a refusal, from the
        same draw (``walk``: that first, and then the generator): the store mostly takes the
        first, and a generator it leaves unfinished is closed by raising GeneratorExit into it,
        which cost more than working the option out (CPython 3.11).
        """
        rest = walk[1]
        if rest is None:
            group = tiers[0] if walk[0] is None and tiers else None
            candidates = group and group.gathered()
            if candidates:
                position = group.first(self.rng, group.whole or (index, 0) in page.whole)
                candidate = candidates[position]
                option = self._option(candidate, page)
                if option is not None and (not page.taken or page.taken.isdisjoint(option.names)):
                    seen.append((candidate, option))
                    walk[0] = (position, option)
                    return option
                walk[0] = (position, None)
            rest = walk[1] = self._offer(index, tiers, page, seen, walk[0])
        return next(rest)

    def _offer(self, index: int, tiers: tuple[Group, ...], page: _Page, seen: list[tuple],
               first: tuple[int, Option | None] | None = None) -> Iterator[Option | None]:
        """Need ``index``'s options, best first, lazily (the embedded store stops at the first fit).

        Each is also appended to ``seen`` with its candidate; a cut big tier ends with (tier, CUT).
        Ranking by weighted draws, then taking the first allowed, gives each allowed candidate
        exactly its share among the allowed ones: refused draws only drop out of the lottery.
        ``first``: the first tier's first candidate was drawn already (``_next_option``), at this
        position, and its option offered (None: it was not).
        """
        taken, rng = page.taken, self.rng  # taken: empty but on a page asked again after a CUT
        for tier, group in enumerate(tiers):
            whole = group.whole or (index, tier) in page.whole
            unbounded = False  # an option no counter refuses: lower tiers would not be reached
            if first is None:
                ranked = group.order(rng) if whole else group.draw(rng, DRAWS)
            else:
                ranked = group.rest(rng, whole, first[0])
                unbounded = first[1] is not None and not first[1].checks
                first = None
            for candidate in ranked:
                option = self._option(candidate, page)
                if option is not None and (not taken or taken.isdisjoint(option.names)):
                    seen.append((candidate, option))
                    yield option
                    unbounded |= not option.checks
            if not whole or (unbounded and tier + 1 < len(tiers)):  # draws never cover a big tier
                seen.append((tier, CUT))  # (unless a need before it takes that option: then ask again)
                yield CUT
            if unbounded:
                return

    def _option(self, candidate: Candidate, page: _Page) -> Option | None:
        """The candidate's campaign as the store sees it (None: it may not serve this reader); once per page.

        Its bounds are the same for every reader, a reader's frequency cap only adds that reader's
        counter, and they hold for as long as the ledger says (until a paced limit moves; within
        the local hour, where cap buckets and days change): kept on the candidate for the pages of
        that stretch, stamped with the hour (a page still walking when the next hour starts works
        out its own, in its place), with its Option when it reserves nothing and has no cap, so
        most pages only add their reservation id (and cap counter). A big book's campaigns are
        each drawn a few times a second: kept per second, their bounds were worked out again for
        most draws.
        """
        known = candidate.kept
        if known is None or known[6] is not page.era or not known[0] <= page.now < known[1]:
            known = self._known(candidate, page, known)
        option = known[4]
        if option is None:  # it reserves, or reads the reader's cap: worked out per page
            option = page.options.get(known[5], self)  # self: not asked yet (None is an answer)
            if option is self:
                found = known[3].of(page.reader)
                option = page.options[known[5]] = None if found is None else \
                    _new(Option, (known[2], *found, page.reservation + known[5] if found[1] else None))
        return option

    def _known(self, candidate: Candidate, page: _Page, known: tuple | None) -> tuple:
        """What ``_option`` keeps of a candidate's campaign while its bounds hold, one flat tuple:
        (since, until, names, Bounds, its Option when the same for every reader and page, its id
        as text: the end of its reservation ids and a page's key for its Option, the hour's era).
        Most candidates are their listing's ``whole`` one, shared by every (sizes, device) row
        (and decider: hence the era); in a row where only some of its creatives fit, a campaign
        has a candidate of that row's own, and so an entry of its own there."""
        campaign = candidate.campaign
        if known is not None and known[6] is page.era:  # only its bounds moved
            names, text = known[2], known[5]
        else:
            text = f"{campaign.id}"
            names = (f"c{text}", f"a:{campaign.advertiser}") if self.unique_advertiser else (f"c{text}",)
        bounds = self.ledger.bounds(campaign, page.moment) if bounded(campaign) else UNBOUNDED
        unreserved = Option(names, bounds.checks, (), None) if bounds.cap_count is None and not bounds.holds else None
        known = candidate.kept = (bounds.since, bounds.until, names, bounds, unreserved, text, page.era)
        return known

    async def bill(self, kind: str, campaign_id: object, user: str | None, hit: str, ttl: int,
                   reservation: str | None = None, mark: tuple[str, str] | None = None) -> bool | None:
        """Whether one counted impression or click is within its campaign's limits; counts it if so.

        An impression confirms the reservation its decision made; after that expired, or for a
        click, it is charged only if every limit still fits. Idempotent per ``hit``. With
        ``mark`` (the hit's token mark, the attempt), the mark is claimed first, in the same store
        call: None, and nothing billed, when another attempt holds it (see ``StateStore.settle``).
        """
        campaign = self.inventory.campaigns.get(campaign_id)
        charges = None if campaign is None else self.ledger.charge(campaign, kind, user,
                                                                   self.ledger.moment(self.clock()))
        if charges is None:
            return False if mark is None or await claim(self.state, *mark, ttl) else None
        return await self.state.settle(bill_key(kind, hit), ttl, reservation if kind == "impression" else None,
                                       charges, mark)

    def charge_micros(self, kind: str, campaign_id: object) -> int:
        """The spend one billable ``kind`` of the campaign adds, in micro-units (0: it charges the other event)."""
        campaign = self.inventory.campaigns.get(campaign_id)
        return 0 if campaign is None else spend_micros(campaign, kind)

    def _targeted(self, need: AdNeed, page: _Page) -> _Targeted:
        """The context's targeting outcome, kept until a candidate's flight or daypart edge.

        The context is everything targeting reads: sizes, placement, section, keywords, URL
        (when some campaign targets URLs), device and country. Readers and counters are not.
        The most recently used contexts are kept: an article read now is likely read again soon.
        They are bounded in number and in bytes: a context may match most of a big book, its
        key holds the page's keywords and URL, and its tiers not drawn from yet keep their row
        (a candidate per campaign) after the inventory drops it; every view may be a new context.
        """
        request = page.request
        context = _new(Context, (need.sizes, need.placement, request.page.section, request.page.keywords,
                                 request.page.url if self.inventory.reads_url else None, request.device,
                                 request.country))
        known = self._contexts.get(context)
        if known is not None and known.since <= page.now < known.until:
            self._contexts.move_to_end(context)
            return known
        if known is not None:  # out of date: replaced
            self._held -= known.held
        tiers, until = self.inventory.lookup(context, page.now, page.local)
        self._contexts[context] = known = _Targeted(page.now, until, tiers, _held(context, tiers))
        self._contexts.move_to_end(context)
        self._held += known.held
        inventory = self.inventory
        while len(self._contexts) > CONTEXTS or (self._held + inventory.dropped_bytes > HELD_BYTES
                                                  and len(self._contexts) > 1):
            self._held -= self._contexts.popitem(last=False)[1].held  # a dropped row may go with it
        return known

    def variant(self, creative: Creative, user: str | None) -> Variant:
        """Weighted choice, sticky per reader: the same reader always sees the same variant.

        The fixed split; a creative under Thompson allocation draws from ``self.allocation``.
        """
        variants = creative.variants
        if len(variants) == 1:
            return variants[0]
        point = _unit_hash(f"{user}:{creative.id}") if user else self.rng.random()
        split = self._splits.get(id(creative))  # the entry holds the creative: its id is not reused
        if split is None:
            split = self._split(creative)
        return variants[min(bisect.bisect_right(split[1], point), split[2])]

    def _split(self, creative: Creative) -> tuple[Creative, list[float], int]:
        """The creative, the running shares of its variants and the last with a weight, kept: the
        top of the shares may fall short of 1.0 by rounding, and that sliver goes to that last."""
        variants = creative.variants
        total = sum(v.weight for v in variants)
        last = max((i for i, v in enumerate(variants) if v.weight > 0), default=len(variants) - 1)
        split = self._splits[id(creative)] = (creative, list(itertools.accumulate(v.weight / total for v in variants)),
                                              last)
        return split


def _held(context: Context, tiers: tuple[Group, ...]) -> int:
    """Roughly the bytes a kept context holds: 16 per candidate (its position and running sum)
    and its key's text, a keyword at most 64 characters and a str and a set slot (~100 bytes)."""
    held = len(context.url or "") + len(context.section or "") + 164 * len(context.keywords or ())
    for group in tiers:
        held += 16 * len(group.cumulative)
    return held


def bill_key(kind: str, hit: str) -> str:
    """Where the store remembers whether a hit was billable: a retried hit moves nothing twice."""
    return f"bill:{kind}:{hit}"


def _unit_hash(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
