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
redis-server; the 100-campaign book is the baseline, timed alternately in the same run. Before the
timed passes each server has settled in as a running one has: every campaign's pacing plan for the
day worked out, the collector frozen after start-up.

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

from common import free_port, median_spread, replace_section

from adserve.decision import AdNeed, Decider, Inventory
from adserve.ledger import Ledger
from adserve.model import (Budget, Campaign, Config, Creative, Daypart, Flight, FrequencyCap, Placement,
                           Price, Site, Targeting, Variant)
from adserve.request import parse_slot_request
from adserve.state import MemoryState, RedisState, Replayed
from tests.conftest import start_redis

BOOKS = (100, 10_000)
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


def book(campaigns: int, now: dt.datetime, shape: str) -> Config:
    rng = random.Random(campaigns)
    listed = [campaign(100_000 + n, rng, now, shape) for n in range(campaigns)]
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
    """One book against one store: a Decider, and the views it has decided (readers settle half)."""

    def __init__(self, config: Config, state) -> None:
        self.decider = Decider(Inventory(config), Ledger(TIMEZONE), state, True, random.Random(1))
        self.hits = itertools.count()
        self.rng = random.Random(2)

    async def decide(self, views: list) -> tuple[float, float]:
        """µs per page for ``views``, and reservations made per page (a fill with a cap, budget or
        pacing: what a page pays for counters); half the fills are then confirmed by their pixel (not timed)."""
        spent, reserved = 0.0, 0
        for view in views:
            needs = [AdNeed(s.id, s.sizes, s.placement) for s in view.slots]
            started = time.perf_counter()
            fills = await self.decider.decide(view, needs)
            spent += time.perf_counter() - started
            reserved += sum(fill is not None and fill.reservation is not None for fill in fills.values())
            for fill in fills.values():
                if fill is not None and self.rng.random() < 0.5:
                    await self.decider.bill("impression", fill.campaign.id, view.user_id, f"h{next(self.hits)}",
                                            3600, fill.reservation)
        return spent / len(views) * 1e6, reserved / len(views)

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
    now = dt.datetime.now(UTC)
    pages = articles()
    runs = {n: Run(book(n, now, shape), make_state(f"{shape}{n}")) for n in BOOKS}
    for r in runs.values():
        if await r.decider.state.open():  # empty: up once restored
            await r.decider.state.restore(Replayed())
    warm = page_views(WARM_CONTEXTS, 99, pages, tag=True)
    warm_views = [warm[i % len(warm)] for i in random.Random(3).sample(range(views), views)]
    fresh: dict[int, list[float]] = {n: [] for n in BOOKS}
    cached: dict[int, list[float]] = {n: [] for n in BOOKS}
    reserved: dict[tuple[str, int], float] = {}  # (mode, book) -> reservations per page, last pass
    matched = {}
    for n, r in runs.items():  # unmeasured: the index's first activation, Redis scripts, the warm contexts
        await r.decide(page_views(200, 1, pages, tag=True) + warm)
        r.settle_in()
    gc.collect()
    gc.freeze()  # as ``serve`` does after start-up: the book lives as long as the process
    for repeat in range(repeats):
        new_views = page_views(views, 10 + repeat, pages, tag=True)
        for n in (BOOKS if repeat % 2 == 0 else BOOKS[::-1]):
            spent, reserved["fresh", n] = await runs[n].decide(new_views)
            fresh[n].append(spent)
            matched[n] = runs[n].candidates()
            await runs[n].decide(warm)  # the fresh views pushed some warm contexts out: back in, untimed
            spent, reserved["cached", n] = await runs[n].decide(warm_views)
            cached[n].append(spent)
            print(f"{shape} book, {store} pass {repeat + 1}: {n} campaigns, fresh {fresh[n][-1]:.0f} µs, cached {cached[n][-1]:.0f} µs",
                  file=sys.stderr)
    for r in runs.values():
        await r.decider.state.close()
    return {"shape": shape, "store": store, "fresh": fresh, "cached": cached, "matched": matched, "reserved": reserved}


def ratio(times: dict[int, list[float]]) -> float:
    """Requests per second of the big book over the small one (the inverse ratio of µs per page)."""
    return statistics.median(times[BOOKS[0]]) / statistics.median(times[BOOKS[-1]])


def run(repeats: int = 5, views: int = 2000) -> str:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        redis = start_redis(port, Path(folder))
        try:
            for shape in SHAPES:
                results.append(asyncio.run(measure(shape, "memory", lambda name: MemoryState(), repeats, views)))
                results.append(asyncio.run(measure(shape, "redis", lambda name: RedisState(
                    f"redis://127.0.0.1:{port}/0", prefix=f"bench-{name}:"), repeats, views)))
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    rows, goals = [], []
    for r in results:
        for mode, goal in (("fresh", 0.5), ("cached", 0.8)):
            for n in BOOKS:
                rows.append(f"| {r['shape']} | {r['store']} | {mode} | {n:,} | {r['matched'][n]:.1f} | "
                            f"{r['reserved'][mode, n]:.2f} | "
                            f"{median_spread(r[mode][n])} | {1e6 / statistics.median(r[mode][n]):,.0f} |")
            goals.append(f"- {r['shape']} book, {r['store']}, {mode} contexts: **{ratio(r[mode]):.2f}x** "
                         f"(goal >= {goal}x)")
    return "\n".join([
        "### Decision cost vs campaign count",
        f"`python benchmarks/bench_decision.py {repeats} {views}`: in-process `Decider.decide`, a page of two "
        f"display slots (300x250; 970x250/728x90/320x50), {views:,} views per pass x {repeats} passes per book, the two "
        f"books alternating. Fresh: every view a new URL, so every page context is new. Cached: views of "
        f"{WARM_CONTEXTS} contexts that the cache holds. Half the fills are confirmed by their pixel (untimed), "
        "so caps and small daily budgets refuse draws. Candidates: mean campaigns that match a slot's context. "
        "Reserved: ads per page whose counters the decision checked and held (a capped, budgeted or paced "
        "campaign; house ads and empty slots hold none), last pass: a book that fills more slots with such "
        "campaigns does more work per page that is not the book's size. "
        "Books: narrow (every campaign aimed at a section and some of its topics or URLs) and broad (half "
        "run on whole sections).", "",
        "| book | store | contexts | campaigns | candidates per slot | reserved per page | µs per page (median, min–max) "
        "| pages/s |", "|---|---|---|---:|---:|---:|---:|---:|", *rows, "",
        f"{BOOKS[-1]:,} / {BOOKS[0]} campaigns, pages per second:", *goals, ""])


if __name__ == "__main__":
    section = run(*map(int, sys.argv[1:3]))
    replace_section(section)
    print(section)
