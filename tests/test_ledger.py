"""Frequency caps, budgets and pacing, on a fake clock, in the site's timezone."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import pytest

from adserve.decision import AdNeed
from adserve.ledger import Ledger
from adserve.model import Budget, FrequencyCap, Price

from .conftest import FakeClock
from .test_decision import campaign, decider, request

UTC = dt.timezone.utc
HITS = itertools.count()  # unique hit ids: billing is idempotent per hit


def serve_and_count(d, req, times: int, click=False) -> int:
    """Decide ``times`` times, billing an impression (and a click) for every fill."""
    served = 0
    for _ in range(times):
        fills = asyncio.run(d.decide(req, [AdNeed("s0", ("300x250",), None)]))
        fill = fills["s0"]
        if fill is None:
            continue
        served += 1
        for event in ("impression", "click") if click else ("impression",):
            assert asyncio.run(d.bill(event, fill.campaign.id, req.user_id, f"hit{next(HITS)}", 86400,
                                      fill.reservation))
    return served


def test_frequency_cap_per_reader_and_period():
    clock = FakeClock()
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3, period="day"))], clock)
    assert serve_and_count(d, request(user={"id": "a"}), 10) == 3
    assert serve_and_count(d, request(user={"id": "b"}), 10) == 3
    clock.advance(days=1)
    assert serve_and_count(d, request(user={"id": "a"}), 10) == 3


def test_frequency_cap_without_reader_fails_closed():
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3))])
    assert serve_and_count(d, request(user={}), 5) == 0


def test_total_impression_budget_asap():
    d = decider([campaign(1, budget=Budget(metric="impressions", total=25), pacing="asap")])
    assert serve_and_count(d, request(), 100) == 25


def test_spend_budget_counts_cpm_price():
    # 4.00 CPM: each impression spends 0.004; a budget of 0.1 buys 25 impressions
    d = decider([campaign(1, price=4.0, budget=Budget(metric="spend", total=0.1), pacing="asap")])
    assert serve_and_count(d, request(), 100) == 25


def test_click_budget_on_cpc():
    c = campaign(1, budget=Budget(metric="clicks", daily=7), pacing="asap")
    c.price = Price(model="cpc", amount=1.0)
    d = decider([c])
    assert serve_and_count(d, request(), 20, click=True) == 7


def test_even_pacing_spreads_the_daily_budget():
    # Midnight in New York is 05:00 UTC in November.
    clock = FakeClock(dt.datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="even")], clock)
    served_by_hour = []
    for _ in range(24):
        served_by_hour.append(serve_and_count(d, request(), 40))
        clock.advance(hours=1)
    # one hour ahead of the straight line: 10 at once, then 10 more each hour, never more
    assert served_by_hour == [10] * 24
    assert serve_and_count(d, request(), 40) == 10  # the next local day starts afresh


def test_asap_pacing_spends_at_once():
    clock = FakeClock(dt.datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="asap")], clock)
    assert serve_and_count(d, request(), 400) == 240


@pytest.mark.parametrize("day, hours", [((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 6, 1), 24)])
def test_local_day_length_across_dst(day, hours):
    ledger = Ledger("America/New_York")
    noon = dt.datetime(*day, 17, 0, tzinfo=UTC)
    start, end = ledger.day_bounds(noon)
    assert (end - start) == dt.timedelta(hours=hours)


def test_daily_budget_resets_at_local_midnight_not_utc():
    clock = FakeClock(dt.datetime(2026, 11, 24, 23, 0, tzinfo=UTC))  # 18:00 in New York
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=5), pacing="asap")], clock)
    assert serve_and_count(d, request(), 10) == 5
    clock.advance(hours=2)  # 01:00 UTC: a new UTC day, same New York day
    assert serve_and_count(d, request(), 10) == 0
    clock.advance(hours=4)  # 05:00 UTC = local midnight
    assert serve_and_count(d, request(), 10) == 5


def test_even_pacing_over_a_23_hour_day():
    clock = FakeClock(dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC))  # local midnight, DST day
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=230), pacing="even")], clock)
    total = 0
    for _ in range(23):
        total += serve_and_count(d, request(), 30)
        clock.advance(hours=1)
    assert total == 230
