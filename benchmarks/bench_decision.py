"""Decision cost as the campaign book grows: 100, 1,000 and 10,000 campaigns.

In-process, one Decider per book, the same 2,000 page views (varied sections, devices, readers)
against each; the 100-campaign book is the baseline of the ratio. The first pass meets every page
context new (targeting is worked out and kept); later passes are the steady state, where readers
differ but contexts repeat.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from common import OUT
from world import write_config

from adserve.config import load_config
from adserve.decision import AdNeed, Decider, Inventory
from adserve.ledger import Ledger
from adserve.recs.simulate import SECTIONS
from adserve.request import parse_slot_request
from adserve.state import MemoryState

BOOKS = (100, 1000, 10_000)


def page_views(placements, n: int = 2000) -> list:
    rng = random.Random(5)
    views = []
    for i in range(n):
        body = {"page": {"item_id": f"a{i}", "section": rng.choice(SECTIONS),
                         "keywords": rng.sample(["election", "budget", "ai", "court", "jobs"], 2),
                         "url": f"https://news.example/{i}"},
                "user": {"id": f"reader-{rng.randrange(5000)}"},
                "device": rng.choice(["desktop", "desktop", "mobile"]), "country": "US",
                "slots": [{"id": "side", "placement": "sidebar-300x250"},
                          {"id": "top", "placement": "top-banner"}]}
        views.append(parse_slot_request(body, placements, 20))
    return views


def time_book(campaigns: int, repeats: int) -> list[float]:
    loaded = load_config(write_config(OUT / f"book-{campaigns}", campaigns))
    assert loaded.ok, loaded.errors[:3]
    config = loaded.config
    decider = Decider(Inventory(config), Ledger(config.site.timezone), MemoryState(),
                      rng=random.Random(1))
    views = page_views(config.placements)
    needs = [[AdNeed(s.id, s.sizes, s.placement) for s in view.slots] for view in views]
    loop = asyncio.new_event_loop()
    per_decision = []
    for _ in range(repeats):
        started = time.perf_counter()
        for view, need in zip(views, needs):
            loop.run_until_complete(decider.decide(view, need))
        per_decision.append((time.perf_counter() - started) / len(views) * 1e6)
    loop.close()
    return per_decision


def run(repeats: int = 6) -> str:
    passes = {n: time_book(n, repeats) for n in BOOKS}
    results = {n: r[1:] for n, r in passes.items()}
    base = statistics.median(results[BOOKS[0]])
    rows = [f"| {n:,} | {passes[n][0]:.1f} | {statistics.median(r):.1f} | {min(r):.1f}–{max(r):.1f} | "
            f"{statistics.median(r) / base:.2f} |" for n, r in results.items()]
    return "\n".join([
        "### Decision cost vs campaign count",
        f"In-process `Decider.decide` for a page with two display slots (300x250; 970x250/728x90/320x50), "
        f"2,000 varied page views: a first pass (every page context new), then {repeats - 1} passes.", "",
        "| campaigns | first pass µs per page | then µs per page (median) | spread | vs 100 |",
        "|---:|---:|---:|---:|---:|", *rows, "",
        f"**10,000 / 100 campaigns: {statistics.median(results[BOOKS[-1]]) / base:.2f}x** (target <= 2x)", ""])


if __name__ == "__main__":
    print(run())
