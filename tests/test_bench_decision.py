"""benchmarks/bench_decision.py's books and clock: what its two measures compare must be what
its report says they compare."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_decision as bench  # noqa: E402

from adserve.state import MemoryState  # noqa: E402

NOW = dt.datetime.fromtimestamp(1796223600.0, dt.timezone.utc)


def test_an_equal_demand_book_is_the_same_draws_as_bigger_orders():
    small = bench.book(100, NOW, "narrow")
    equal = bench.book(100, NOW, "narrow", "equal")
    assert len(small.campaigns) == len(equal.campaigns)
    budgets = 0
    for drawn, order in zip(small.campaigns, equal.campaigns):
        assert (order.id, order.tier, order.weight, order.price, order.pacing, order.frequency_cap, order.flight,
                order.creatives) == (drawn.id, drawn.tier, drawn.weight, drawn.price, drawn.pacing,
                                     drawn.frequency_cap, drawn.flight, drawn.creatives)
        wide, narrow = order.targeting, drawn.targeting
        assert (wide.devices, wide.countries, wide.placements, wide.dayparts, wide.keywords.exclude) == \
            (narrow.devices, narrow.countries, narrow.placements, narrow.dayparts, narrow.keywords.exclude)
        assert (wide.sections, wide.keywords.include, wide.url_patterns) == ([], [], [])  # reach 100x
        if drawn.budget is not None:
            budgets += 1
            assert (order.budget.metric, order.budget.daily, order.budget.total) == (
                drawn.budget.metric, drawn.budget.daily * 100, drawn.budget.total and drawn.budget.total * 100)
    assert budgets > 30  # small daily budgets and big ones, both scaled


def test_the_biggest_book_is_the_same_for_either_demand():
    rng = random.Random(5)
    drawn = [bench.campaign(n, rng, NOW, "narrow") for n in range(50)]
    rng = random.Random(5)
    assert [bench.bigger(bench.campaign(n, rng, NOW, "narrow"), 1) for n in range(50)] == drawn
    assert any(c.targeting.sections and c.targeting.keywords.include for c in drawn)


def test_a_bigger_order_lifts_its_topics_before_its_sections():
    rng = random.Random(6)
    order = next(c for c in (bench.campaign(n, rng, NOW, "narrow") for n in range(50))
                 if c.targeting.keywords.include and c.budget is not None)
    sections = list(order.targeting.sections)
    daily = order.budget.daily
    bench.bigger(order, 10)
    wide = order.targeting
    assert (wide.sections, wide.keywords.include, order.budget.daily) == (sections, [], daily * 10)


def test_every_page_moves_the_simulated_clock_the_decider_and_store_read():
    clock = [bench.START]
    run = bench.Run(bench.book(100, NOW, "narrow", "equal"), MemoryState(lambda: clock[0]), clock)
    views = bench.page_views(40, 1, bench.articles(200), tag=True)
    _, reserved = asyncio.run(run.decide(views))
    assert reserved > 0
    expected = bench.START
    for _ in views:
        expected += bench.PACE
    assert clock[0] == expected
    assert run.decider.clock() == dt.datetime.fromtimestamp(expected, dt.timezone.utc)
    # the store files every page's holds for release 300 s after it, by the simulated clock
    assert run.decider.state._release_seconds == [math.ceil(bench.START + bench.PACE + 300)]
