"""Frequency caps, budgets and pacing, on a fake clock, in the site's timezone."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from adserve.decision import AdNeed
from adserve.ledger import Ledger
from adserve.model import Budget, Flight, FrequencyCap, Price

from .conftest import FakeClock
from .test_decision import campaign, decider, request

UTC = dt.timezone.utc


def serve_and_count(d, req, times: int, click=False) -> int:
    """Decide ``times`` times, charging an impression (and a click) for every fill."""
    served = 0
    for _ in range(times):
        fills = asyncio.run(d.decide(req, [AdNeed("s0", ("300x250",), None)]))
        fill = fills["s0"]
        if fill is None:
            continue
        served += 1
        for event in ("impression", "click") if click else ("impression",):
            inc, ttl = d.ledger.charge(fill.campaign, event, req.user_id, d.ledger.moment(d.clock()))
            asyncio.run(d.state.add(inc, ttl))
    return served


def test_frequency_cap_per_reader_and_period():
    clock = FakeClock()
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3, period="day"))], clock)
    assert serve_and_count(d, request(user={"id": "a"}), 10) == 3
    assert serve_and_count(d, request(user={"id": "b"}), 10) == 3
    clock.advance(days=1)
    assert serve_and_count(d, request(user={"id": "a"}), 10) == 3


def test_frequency_cap_counts_impressions_only():
    """A click is not another view of the ad: clicking must not use up the reader's cap."""
    c = campaign(1, frequency_cap=FrequencyCap(count=3, period="day"))
    d = decider([c])
    moment = d.ledger.moment(d.clock())
    for _ in range(5):  # clicks from earlier pages of the day
        increments, ttl = d.ledger.charge(c, "click", "a", moment)
        asyncio.run(d.state.add(increments, ttl))
    assert serve_and_count(d, request(user={"id": "a"}), 10, click=True) == 3


def test_frequency_cap_without_reader_fails_closed():
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3))])
    assert serve_and_count(d, request(user={}), 5) == 0


def test_total_impression_budget_asap():
    d = decider([campaign(1, budget=Budget(metric="impressions", total=25), pacing="asap")])
    assert serve_and_count(d, request(), 100) == 25


def test_even_pacing_spreads_a_total_budget_over_the_flight():
    """No daily budget: the total is paced along the flight, an hour ahead of the straight line."""
    clock = FakeClock()
    flight = Flight(start=clock(), end=clock() + dt.timedelta(days=10))
    d = decider([campaign(1, budget=Budget(metric="impressions", total=240), pacing="even",
                          flight=flight)], clock)
    assert serve_and_count(d, request(), 10) == 1  # 1 hour of 240
    clock.advance(hours=23)
    assert serve_and_count(d, request(), 100) == 23  # 24 hours of 240
    clock.advance(days=20)
    assert serve_and_count(d, request(), 500) == 0  # the flight is over


def test_with_a_daily_budget_the_total_is_not_paced_again():
    clock = FakeClock()
    flight = Flight(start=clock(), end=clock() + dt.timedelta(days=10))
    d = decider([campaign(1, budget=Budget(metric="impressions", total=30, daily=1000), pacing="even",
                          flight=flight)], clock)
    clock.advance(hours=12)  # the daily pacing allows far more than 30 by now
    assert serve_and_count(d, request(), 100) == 30


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


def test_even_pacing_never_allows_more_than_the_daily_budget():
    clock = FakeClock(dt.datetime(2026, 11, 25, 4, 30, tzinfo=UTC))  # 23:30 in New York
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="even")], clock)
    assert serve_and_count(d, request(), 400) == 240  # the hour of slack does not reach past the day


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


def test_charges_name_their_counters_and_expiries():
    """What one hit adds, and for how long each counter lives: totals a week past the flight,
    days two days, a cap its period plus an hour (a flight-long cap: the flight's life)."""
    clock = FakeClock()  # 2026-11-25 15:00 UTC, 10:00 in New York
    ledger = Ledger("America/New_York")
    moment = ledger.moment(clock())
    flight_left = int((dt.datetime(2027, 1, 1, tzinfo=UTC) - clock()).total_seconds()) + 7 * 86400
    cpm = campaign(1, price=4.0, frequency_cap=FrequencyCap(count=3, period="day"))
    assert ledger.charge(cpm, "impression", "u", moment) == (
        {"c1:total:impressions": 1.0, "c1:day:2026-11-25:impressions": 1.0,
         "c1:total:spend": 0.004, "c1:day:2026-11-25:spend": 0.004, "c1:cap:u:20261125": 1.0},
        {"c1:total:impressions": flight_left, "c1:day:2026-11-25:impressions": 2 * 86400,
         "c1:total:spend": flight_left, "c1:day:2026-11-25:spend": 2 * 86400, "c1:cap:u:20261125": 90000})
    assert ledger.charge(cpm, "click", "u", moment) == (
        {"c1:total:clicks": 1.0, "c1:day:2026-11-25:clicks": 1.0},
        {"c1:total:clicks": flight_left, "c1:day:2026-11-25:clicks": 2 * 86400})
    cpc = campaign(2, frequency_cap=FrequencyCap(count=3, period="flight"))
    cpc.price = Price(model="cpc", amount=0.5)
    increments, ttl = ledger.charge(cpc, "click", "u", moment)
    assert increments["c2:total:spend"] == increments["c2:day:2026-11-25:spend"] == 0.5
    assert "c2:total:spend" not in ledger.charge(cpc, "impression", "u", moment)[0]
    assert ledger.charge(cpc, "impression", "u", moment)[1]["c2:cap:u:all"] == flight_left + 3600
    ending = campaign(3, flight=Flight(start=dt.datetime(2026, 1, 1, tzinfo=UTC),
                                       end=clock() - dt.timedelta(days=6)))
    ttl = ledger.charge(ending, "impression", None, moment)[1]
    assert ttl["c3:total:impressions"] == 2 * 86400  # a day past the week after: a day counter's life


@pytest.mark.parametrize("period, bucket, ttl", [
    ("hour", "2026112510", 3600 + 3600), ("day", "20261125", 86400 + 3600),
    ("week", "2026-W48", 7 * 86400 + 3600)])
def test_a_cap_counts_in_its_local_period(period, bucket, ttl):
    clock = FakeClock()  # Wednesday 2026-11-25, 10:00 in New York (ISO week 48)
    ledger = Ledger("America/New_York")
    capped = campaign(1, frequency_cap=FrequencyCap(count=3, period=period))
    increments, ttls = ledger.charge(capped, "impression", "u", ledger.moment(clock()))
    assert increments[f"c1:cap:u:{bucket}"] == 1.0 and ttls[f"c1:cap:u:{bucket}"] == ttl
    assert ledger.limits(capped, "u", ledger.moment(clock()))[0] == (f"c1:cap:u:{bucket}", 3)
