"""Decision cost as the campaign book grows from 100 to 10,000 campaigns, with a site's traffic.

The traffic: 20,000 articles in 16 sections, each with its own 3-6 keywords (drawn mostly from its
section's share of a 1,600-word vocabulary, plus some safety words like "crash") and URL; each view
is a new URL (the article's plus a per-view tag), a device, a country and a reader, for a page of
two display slots (sidebar 300x250; top banner 970x250/728x90/320x50). The "fresh" passes meet
every page context for the first time; the "warm" passes replay views of 400 contexts that an
unmeasured pass has already cached.

The books, each drawn from one distribution at both sizes, in two shapes (see ``SHAPES``):
campaigns targeted by section, include and exclude keywords, devices, countries, placements, URL
patterns, dayparts, and flights of which some have not started or have ended. Most have caps or budgets, a tenth have daily budgets
small enough to run out during the run, and half the reservations are settled as impressions:
counters refuse draws as on a live site. Each book runs against the in-memory store and a real
redis-server; the 100-campaign books are the baselines, timed alternately in the same run. Before
the timed passes each server has settled in as a running one has: every campaign's pacing plan for
the day worked out, the collector frozen after start-up. The clock is simulated (``Run``).

Two measures share the 10,000-campaign book. Per-campaign demand: the 100 campaigns are drawn like
the 10,000, so the small book has a hundredth of the demand; its narrow campaigns match few pages,
most of its slots go to a house ad or stay empty, and its pages do less work for that. Equal
demand: the same 100 draws as orders 100 times bigger, in budgets and in reach (``bigger``), so
both books fill about as many paid ads a page and the ratio is left with the book's size.

    python benchmarks/bench_decision.py [PASSES [VIEWS]]  # writes its section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import itertools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from common import free_port, median_spread, replace_section

from adserve.decision import AdNeed, Decider, Inventory
from adserve.ledger import Ledger
from adserve.model import (Budget, Campaign, Config, Creative, Daypart, Flight, FrequencyCap, Placement,
                           Price, Site, Targeting, Variant)
from adserve.request import parse_slot_request
from adserve.state import MemoryState, RedisState, Replayed
from tests.conftest import start_redis

BOOKS = (100, 10_000)
DEMANDS = ("per campaign", "equal")  # see ``book``
LINEUP = [(n, "per campaign") for n in BOOKS] + [(n, "equal") for n in BOOKS[:-1]]  # the biggest is the same book
START = 1796223600.0  # 2026-12-02 15:00 UTC, 10:00 in New York: every run sees the same dayparts and pacing lines
PACE = 200e-6  # simulated seconds per page: one worker at full load (bench_slots: ~5,500 light pages/s)
WARM_CONTEXTS = 400     # page views of the warm passes come from this many (cached) contexts
TIMEZONE = "America/New_York"
SECTIONS = [f"section{n}" for n in range(16)]
VOCABULARY = [f"kw{n}" for n in range(1600)]  # 100 per section, in order
UNSAFE = ["crash", "shooting", "war", "disaster", "scandal"]
DEVICES = ["desktop", "mobile", "mobile", "tablet", "app"]
COUNTRIES = ["US"] * 6 + ["CA", "GB", "DE", "FR", "MX", "BR", "IN", "AU"]
SIZES = {"300x250": 6, "728x90": 3, "320x50": 2, "970x250": 1, "300x600": 1}
PLACEMENTS = {
    "sidebar-300x250": Placement(id="sidebar-300x250", type="display", sizes=["300x250"]),
    "top-banner": Placement(id="top-banner", type="display", sizes=["970x250", "728x90", "320x50"]),
    "special-offer": Placement(id="special-offer", type="display", sizes=["300x250"]),
}
UTC = dt.timezone.utc


def section_keywords(rng: random.Random, section: int, n: int) -> list[str]:
    """Keywords of an article (or a campaign aimed at one): mostly its section's, some from anywhere."""
    own = VOCABULARY[100 * section:100 * section + 100]
    return [rng.choice(own) if rng.random() < 0.8 else rng.choice(VOCABULARY) for _ in range(n)]


# How often a campaign is aimed at sections, at keywords, at URLs. Narrow: like a big book of
# many small orders, each for a section's readers of some topics (or some URLs). Broad: many
# campaigns run on whole sections, so a page matches ~2% of the book (~200 of 10,000 per slot).
SHAPES = {"narrow": (1.0, 0.9, 1.0), "broad": (0.85, 0.5, 0.05)}


def campaign(cid: int, rng: random.Random, now: dt.datetime, shape: str) -> Campaign:
    sections, keywords, urls = SHAPES[shape]
    section = rng.randrange(len(SECTIONS))
    targeting = Targeting()
    if rng.random() < sections:
        targeting.sections = [SECTIONS[section]] + ([rng.choice(SECTIONS)] if rng.random() < 0.3 else [])
    if rng.random() < keywords:
        targeting.keywords.include = section_keywords(rng, section, 3)
    elif rng.random() < urls:
        targeting.url_patterns = rng.choice([[f"https://news.example/{SECTIONS[section]}/*"],
                                             [f"https://news.example/{SECTIONS[section]}/a{rng.randrange(2000)}?*"],
                                             ["https://news.example/*/a1??*"]])
    if rng.random() < 0.2:
        targeting.keywords.exclude = rng.sample(UNSAFE, 3)
    if rng.random() < 0.4:
        targeting.devices = rng.sample(["desktop", "mobile", "tablet", "app"], 2)
    if rng.random() < 0.3:
        targeting.countries = rng.sample(sorted(set(COUNTRIES)), 3)
    if rng.random() < 0.1:
        targeting.placements = [rng.choice(["sidebar-300x250", "special-offer", "top-banner"])]
    if rng.random() < 0.15:
        start = rng.randrange(0, 20)
        targeting.dayparts = [Daypart(start=f"{start:02d}:00", end=f"{min(24, start + rng.randrange(2, 12)):02d}:00")]
    flight = Flight(start=now - dt.timedelta(days=30), end=now + dt.timedelta(days=30))
    if rng.random() < 0.05:
        flight.start = now + dt.timedelta(days=2, minutes=rng.randrange(1440))
    elif rng.random() < 0.05:
        flight.end = now - dt.timedelta(days=1)
    size = rng.choices(list(SIZES), list(SIZES.values()))[0]
    creatives = [Creative(id=f"g{cid}-{n}", size=size, platform=platform, landing_url=f"https://adv{cid}.example/",
                          variants=[Variant(id="A", image_url="/static/creatives/house-300x250.svg")])
                 for n, platform in enumerate(["ANY"] if rng.random() < 0.8 else ["WEB", "MWEB"])]
    budget = None
    if rng.random() < 0.1:
        budget = Budget(metric="impressions", daily=rng.choice([5, 20, 50]))
    elif rng.random() < 0.6:
        budget = Budget(metric="impressions", daily=rng.choice([10**5, 10**6]), total=10**8)
    return Campaign(id=cid, name=f"Campaign {cid}", advertiser=f"Advertiser {cid % 400}", flight=flight,
                    tier=rng.choices(["sponsorship", "standard", "remnant"], [2, 83, 15])[0],
                    weight=rng.choice([1, 1, 2, 3]), price=Price(model="cpm", amount=rng.choice([1, 2, 5, 10])),
                    pacing=rng.choice(["even", "asap"]), budget=budget,
                    frequency_cap=FrequencyCap(count=rng.choice([2, 3, 5])) if rng.random() < 0.5 else None,
                    targeting=targeting, creatives=creatives)


def house(cid: int, size: str, now: dt.datetime) -> Campaign:
    """A few untargeted house ads at every book size: what fills when nothing else can."""
    return Campaign(id=cid, name=f"House {size}", advertiser="House", tier="house",
                    flight=Flight(start=now - dt.timedelta(days=300), end=now + dt.timedelta(days=300)),
                    price=Price(model="cpm", amount=0),
                    creatives=[Creative(id=f"house-{size}", size=size, landing_url="https://news.example/subscribe",
                                        variants=[Variant(id="A", image_url="/static/creatives/house-300x250.svg")])])


def bigger(order: Campaign, scale: int) -> Campaign:
    """The same order ``scale`` times bigger, as a smaller book sells the same inventory: its
    impression budgets ``scale`` times as many, its reach about ``scale`` times as wide. A narrow
    campaign's topics (keywords or URL patterns) keep ~1/9 of its sections' views, its sections
    ~1/12 of all views: the order runs without its topics from scale 10, without its sections too
    from scale 100. Its reader caps, devices, countries, placements, dayparts, exclusions, flight,
    sizes, tier, price and pacing stay."""
    budget = order.budget
    if scale > 1 and budget is not None:
        order.budget = Budget(metric=budget.metric, **{period: None if amount is None else amount * scale
                                                       for period, amount in (("daily", budget.daily),
                                                                              ("total", budget.total))})
    if scale >= 10:
        order.targeting.keywords.include, order.targeting.url_patterns = [], []
    if scale >= 100:
        order.targeting.sections = []
    return order


def book(campaigns: int, now: dt.datetime, shape: str, demand: str = "per campaign") -> Config:
    """``demand``: "per campaign", every book's campaigns drawn alike (a bigger book has more demand);
    "equal", each campaign an order ``BOOKS[-1] / campaigns`` times bigger (``bigger``): every
    book has the demand of the biggest. Either way the same draws, so a book's equal-demand
    campaigns are its per-campaign ones made bigger."""
    rng = random.Random(campaigns)
    scale = BOOKS[-1] // campaigns if demand == "equal" else 1
    listed = [bigger(campaign(100_000 + n, rng, now, shape), scale) for n in range(campaigns)]
    listed += [house(n + 1, size, now) for n, size in enumerate(SIZES)]
    return Config(site=Site(timezone=TIMEZONE, unique_advertiser_per_page=True), placements=PLACEMENTS,
                  campaigns=listed)


def articles(n: int = 20_000) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        section = rng.randrange(len(SECTIONS))
        keywords = section_keywords(rng, section, rng.randrange(3, 7))
        if rng.random() < 0.1:
            keywords.append(rng.choice(UNSAFE))
        out.append({"item_id": f"a{i}", "section": SECTIONS[section], "keywords": keywords,
                    "url": f"https://news.example/{SECTIONS[section]}/a{i}"})
    return out


def page_views(n: int, seed: int, pages: list[dict], tag: bool) -> list:
    """``n`` views of popular-first articles; ``tag``: each view's URL is new (a per-view tag)."""
    rng = random.Random(seed)
    views = []
    for i in range(n):
        page = dict(pages[int(len(pages) * rng.random() ** 3)])  # a few articles draw most views
        if tag:
            page["url"] += f"?v={seed}-{i}"
        body = {"page": page, "user": {"id": f"reader-{int(50_000 * rng.random() ** 2)}"},
                "device": rng.choice(DEVICES), "country": rng.choice(COUNTRIES),
                "slots": [{"id": "side", "placement": "sidebar-300x250"}, {"id": "top", "placement": "top-banner"}]}
        views.append(parse_slot_request(body, PLACEMENTS, 20))
    return views


class Run:
    """One book against one store: a Decider, and the views it has decided (readers settle half).

    The decider and the store read a simulated clock that moves ``PACE`` a page: every book,
    fast or slow, loaded machine or not, sees the same seconds pass per page, so the same
    paced limits move (and the same dayparts hold) for the same pages."""

    def __init__(self, config: Config, state, clock: list[float] | None = None) -> None:
        """``clock``: the simulated Unix seconds (one item) that ``state`` reads too."""
        self.clock = [START] if clock is None else clock
        self.decider = Decider(Inventory(config), Ledger(TIMEZONE), state, True, random.Random(1),
                               clock=lambda: dt.datetime.fromtimestamp(self.clock[0], UTC))
        self.hits = itertools.count()
        self.rng = random.Random(2)

    async def decide(self, views: list) -> tuple[float, float]:
        """µs per page for ``views``, and reservations made per page (a fill with a cap, budget or
        pacing: what a page pays for counters); half the fills are then confirmed by their pixel (not timed)."""
        spent, reserved = 0.0, 0
        for view in views:
            needs = [AdNeed(s.id, s.sizes, s.placement) for s in view.slots]
            self.clock[0] += PACE
            started = time.perf_counter()
            fills = await self.decider.decide(view, needs)
            spent += time.perf_counter() - started
            reserved += sum(fill is not None and fill.reservation is not None for fill in fills.values())
            await self.bill(view, fills)
        return spent / len(views) * 1e6, reserved / len(views)

    async def bill(self, view, fills: dict) -> None:
        """Half the fills of ``view`` confirmed by their pixel."""
        for fill in fills.values():
            if fill is not None and self.rng.random() < 0.5:
                await self.decider.bill("impression", fill.campaign.id, view.user_id, f"h{next(self.hits)}",
                                        3600, fill.reservation)

    def settle_in(self) -> None:
        """Work out every campaign's pacing plan and counters for the day, as a server that has
        served for a while has: the passes then time pages, not each campaign's first sight."""
        moment = self.decider.ledger.moment(self.decider.clock())
        for campaign in self.decider.inventory.campaigns.values():  # a reader: a capped campaign
            self.decider.ledger.limits(campaign, "settling", moment)  # skips none (None would skip it)

    def candidates(self) -> float:
        """Mean candidates per slot over the contexts the decider has kept."""
        kept = list(self.decider._contexts.values())
        return sum(len(g.candidates) for t in kept for g in t.tiers) / max(1, len(kept))


async def measure(shape: str, store: str, make_state, repeats: int, views: int) -> dict:
    """Every book of ``LINEUP`` in one shape against one kind of store, the books alternating;
    results keyed by mode ("fresh", "cached"), then by (campaigns, demand)."""
    now = dt.datetime.fromtimestamp(START, UTC)
    pages = articles()
    runs = {}
    for n, demand in LINEUP:
        clock = [START]
        runs[n, demand] = Run(book(n, now, shape, demand), make_state(f"{shape}{n}{demand[0]}", lambda c=clock: c[0]),
                              clock)
    for r in runs.values():
        if await r.decider.state.open():  # empty: up once restored
            await r.decider.state.restore(Replayed())
    warm = page_views(WARM_CONTEXTS, 99, pages, tag=True)
    warm_views = [warm[i % len(warm)] for i in random.Random(3).sample(range(views), views)]
    times: dict[str, dict[tuple, list[float]]] = {mode: {b: [] for b in LINEUP} for mode in ("fresh", "cached")}
    reserved: dict[tuple[str, tuple], float] = {}  # (mode, book) -> reservations per page, last pass
    matched = {}
    for r in runs.values():  # unmeasured: the index's first activation, Redis scripts, the warm contexts
        await r.decide(page_views(200, 1, pages, tag=True) + warm)
        r.settle_in()
    gc.collect()
    gc.freeze()  # as ``serve`` does after start-up: the book lives as long as the process
    for repeat in range(repeats):
        new_views = page_views(views, 10 + repeat, pages, tag=True)
        turn = repeat % len(LINEUP)
        for b in LINEUP[turn:] + LINEUP[:turn]:
            spent, reserved["fresh", b] = await runs[b].decide(new_views)
            times["fresh"][b].append(spent)
            matched[b] = runs[b].candidates()
            await runs[b].decide(warm)  # the fresh views pushed some warm contexts out: back in, untimed
            spent, reserved["cached", b] = await runs[b].decide(warm_views)
            times["cached"][b].append(spent)
            print(f"{shape} book, {store} pass {repeat + 1}: {b[0]} campaigns, {b[1]} demand, "
                  f"fresh {times['fresh'][b][-1]:.0f} µs, cached {times['cached'][b][-1]:.0f} µs", file=sys.stderr)
    for r in runs.values():
        await r.decider.state.close()
    return {"shape": shape, "store": store, **times, "matched": matched, "reserved": reserved}


def ratio(times: dict[tuple, list[float]], demand: str) -> float:
    """Pages per second of the biggest book over the smallest of ``demand`` (the inverse ratio of µs per page)."""
    return statistics.median(times[BOOKS[0], demand]) / statistics.median(times[BOOKS[-1], "per campaign"])


def run(repeats: int = 5, views: int = 2000) -> str:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        redis = start_redis(port, Path(folder))
        try:
            for shape in SHAPES:
                results.append(asyncio.run(measure(shape, "memory", lambda name, clock: MemoryState(clock), repeats,
                                                   views)))
                results.append(asyncio.run(measure(shape, "redis", lambda name, clock: RedisState(
                    f"redis://127.0.0.1:{port}/0", prefix=f"bench-{name}:", clock=clock), repeats, views)))
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    return report(results, repeats, views)


def report(results: list[dict], repeats: int, views: int) -> str:
    """RESULTS.md's section: every book's row, both measures' ratios, and what each measure assumes."""
    rows, goals = [], []
    for r in results:
        for mode, goal in (("fresh", 0.5), ("cached", 0.8)):
            for b in sorted(LINEUP, key=lambda b: (b[0], DEMANDS.index(b[1]))):
                demand = "either" if b[0] == BOOKS[-1] else b[1]
                rows.append(f"| {r['shape']} | {r['store']} | {mode} | {b[0]:,} | {demand} | {r['matched'][b]:.1f} | "
                            f"{r['reserved'][mode, b]:.2f} | "
                            f"{median_spread(r[mode][b])} | {1e6 / statistics.median(r[mode][b]):,.0f} |")
            goals.append(f"- {r['shape']} book, {r['store']}, {mode} contexts (goal >= {goal}x): per-campaign demand "
                         f"**{ratio(r[mode], 'per campaign'):.2f}x**, equal demand **{ratio(r[mode], 'equal'):.2f}x**")
    return "\n".join([
        "### Decision cost vs campaign count",
        f"`python benchmarks/bench_decision.py {repeats} {views}`: in-process `Decider.decide`, a page of two "
        f"display slots (300x250; 970x250/728x90/320x50), {views:,} views per pass x {repeats} passes per book, the "
        f"books alternating. Fresh: every view a new URL, so every page context is new. Cached: views of "
        f"{WARM_CONTEXTS} contexts that the cache holds. Half the fills are confirmed by their pixel (untimed), "
        "so caps and small daily budgets refuse draws. Candidates: mean campaigns that match a slot's context "
        "(house ads included). Reserved: ads per page whose counters the decision checked and held (a capped, "
        "budgeted or paced campaign; house ads and empty slots hold none), last pass. Books: narrow (every "
        "campaign aimed at a section and some of its topics or URLs) and broad (half run on whole sections).", "",
        f"The clock is simulated, from {dt.datetime.fromtimestamp(START, UTC):%Y-%m-%d %H:%M} UTC "
        f"({dt.datetime.fromtimestamp(START, ZoneInfo(TIMEZONE)):%H:%M} in the site's {TIMEZONE}), "
        f"{PACE * 1e6:.0f} µs a page for every book: one worker at full load (bench_slots: ~5,500 light "
        "pages/s). On the wall clock the slower book saw more seconds pass per page (more paced limits moved "
        "per page), and the hour and the load of a run changed its dayparts and pacing lines. A server with "
        "less traffic moves more paced limits per page, a busier one fewer.", "",
        "Two measures, side by side; the 10,000-campaign book is the same in both. **Per-campaign demand** "
        "(the measure of earlier rounds): the small book's campaigns are drawn like the big one's, so it has "
        f"1/{BOOKS[-1] // BOOKS[0]} of its demand. A narrow campaign reaches ~0.2% of slots: most of the narrow "
        "small book's slots have no paid candidate and go to the page's one house ad (one advertiser a page) or "
        "stay empty, and its pages do less work for it: that ratio measures how many paid ads each book fills, "
        "not its size. Budgets are not what it lacks: with 100x budgets it fills the same, as budgets hardly "
        "ever refuse its draws (PROFILE.md, tenth round). **Equal demand**: the small book's campaigns are the "
        f"same draws as orders {BOOKS[-1] // BOOKS[0]} times bigger, in budgets (the small dailies 500-5,000, "
        "the others 10^7-10^8 a day) and in reach: without their topics (keywords or URL patterns, which keep "
        "~1/9 of a section's views) and sections (~1/12 of all views), ~100x the pages. Their reader caps, "
        "devices, countries, placements, dayparts, exclusions, flights, sizes, tiers, prices and pacing stay "
        "as drawn. That is how a site with 100 campaigns sells the same inventory: run-of-site and audience "
        "orders, where a 10^7-a-day order on 0.2% of the pages would never deliver. Both books then fill "
        "every slot with a paid ad and reserve about as many. Where it could flatter the ratio: the narrow equal book's slots meet a few "
        "more candidates than the big book's (more lookup for the small book); the broad one's a tenth as "
        "many, as no book of 100 can match more. Where it is harsh on the big book: its narrow orders' small "
        "budgets run out on popular pages, and a reader rereading an article meets the same capped campaigns, "
        "so its cached pages have several times the small book's refused draws (PROFILE.md): kept, as a big "
        "book of narrow orders does that work.", "",
        "| book | store | contexts | campaigns | demand | candidates per slot | reserved per page "
        "| µs per page (median, min–max) | pages/s |", "|---|---|---|---:|---|---:|---:|---:|---:|", *rows, "",
        f"{BOOKS[-1]:,} / {BOOKS[0]} campaigns, pages per second:", *goals, ""])


if __name__ == "__main__":
    section = run(*map(int, sys.argv[1:3]))
    replace_section(section)
    print(section)
