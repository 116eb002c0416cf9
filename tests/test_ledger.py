"""Frequency caps, budgets and pacing, on a fake clock, in the site's timezone."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import time
from decimal import Decimal
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adserve.decision import AdNeed
from adserve.ledger import EXACT_CAP, Ledger, Limit, _paced, _whole, reader_keys
from adserve.model import Budget, Daypart, Flight, FrequencyCap, Price, Targeting

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


def test_frequency_cap_counts_impressions_only():
    """A click is not another view of the ad: clicking must not use up the reader's cap."""
    c = campaign(1, frequency_cap=FrequencyCap(count=3, period="day"))
    d = decider([c])
    moment = d.ledger.moment(d.clock())
    for _ in range(5):  # clicks from earlier pages of the day
        d.state.seed(d.ledger.charge(c, "click", "a", moment), moment.now.timestamp())
    assert serve_and_count(d, request(user={"id": "a"}), 10, click=True) == 3


def test_frequency_cap_without_reader_fails_closed():
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3))])
    assert serve_and_count(d, request(user={}), 5) == 0


def test_a_capped_campaign_may_serve_readers_without_an_id_and_counts_them_nowhere():
    """``without_consent: serve``: the cap cannot be checked, so it is not; no reader counter moves."""
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3, without_consent="serve"))])
    assert serve_and_count(d, request(user={}), 5) == 5
    assert serve_and_count(d, request(user={"id": "a"}), 5) == 3  # a known reader is still capped


def test_a_pixel_of_a_capped_campaign_without_a_reader_is_not_billed():
    """The cap cannot be checked for an impression token without a reader: it fails closed."""
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=3, period="day"))])
    assert not asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400))
    assert asyncio.run(d.bill("impression", 1, "a", f"hit{next(HITS)}", 86400))


@pytest.mark.parametrize("budget", [Budget(metric="clicks", daily=7), Budget(metric="clicks", total=7)])
def test_a_click_budget_never_limits_impressions(budget):
    c = campaign(1, budget=budget, pacing="asap")
    c.price = Price(model="cpc", amount=1.0)
    d = decider([c])
    assert serve_and_count(d, request(), 20) == 20  # shown, never clicked: nothing spent
    assert serve_and_count(d, request(), 20, click=True) == 7


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


def test_one_ledger_paces_each_campaign_over_its_own_flight():
    """Flight weights are kept per dayparts and flight edges: a campaign never takes another's."""
    clock = FakeClock()
    ledger = Ledger("America/New_York")
    deciders = []
    for cid, days in ((1, 10), (2, 2)):
        flight = Flight(start=clock(), end=clock() + dt.timedelta(days=days))
        d = decider([campaign(cid, budget=Budget(metric="impressions", total=240), pacing="even",
                              flight=flight)], clock)
        d.ledger = ledger
        deciders.append(d)
    clock.advance(hours=23)
    assert [serve_and_count(d, request(), 200) for d in deciders] == [24, 116]  # 23/240 and 23/48 of 240


def test_campaigns_of_other_dayparts_weigh_their_own_flight_days():
    """Whole days of a flight are weighed once per dayparts and day shape: an evening campaign
    must not take an all-day campaign's weights, nor the other way round."""
    clock = FakeClock(dt.datetime(2026, 11, 24, 5, 0, tzinfo=UTC))  # local midnight
    flight = Flight(start=clock(), end=clock() + dt.timedelta(days=10))
    evening = Targeting(dayparts=[Daypart(start="17:00", end="23:00")])
    ledger = Ledger("America/New_York")
    deciders = []
    for cid, targeting in ((1, Targeting()), (2, evening)):
        d = decider([campaign(cid, budget=Budget(metric="impressions", total=600), pacing="even",
                              flight=flight, targeting=targeting)], clock)
        d.ledger = ledger
        deciders.append(d)
    clock.advance(days=1, hours=20, minutes=20)  # 44 1/3 of 240 hours; 9 1/3 of 60 evening hours
    assert [serve_and_count(d, request(), 200) for d in deciders] == [111, 94]  # of 600, one ahead


def test_flight_edges_are_local_days_whatever_the_machines_zone(monkeypatch):
    """A flight starting at 21:00 in New York starts on that New York day, even when the
    machine's own zone (Tokyo here) is already in the next one."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        clock = FakeClock(dt.datetime(2026, 11, 24, 2, 0, tzinfo=UTC))  # 21:00 the day before in New York
        flight = Flight(start=clock(), end=clock() + dt.timedelta(days=10))
        d = decider([campaign(1, budget=Budget(metric="impressions", total=2400), pacing="even",
                              flight=flight)], clock)
        clock.advance(hours=3, minutes=20)
        served = serve_and_count(d, request(), 100)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert served == 34  # 3 1/3 of 240 hours of 2,400, one ahead


def test_a_flight_shorter_than_an_hour_is_paced_too():
    clock = FakeClock()
    flight = Flight(start=clock(), end=clock() + dt.timedelta(minutes=30))
    d = decider([campaign(1, budget=Budget(metric="impressions", total=240), pacing="even",
                          flight=flight)], clock)
    assert serve_and_count(d, request(), 300) == 1
    clock.advance(minutes=12, seconds=20)
    assert serve_and_count(d, request(), 300) == 98  # 98.7 due, one ahead, less the 1 served at the start


def test_pixels_before_a_flight_that_a_reload_moved_later_are_paced_as_at_its_start():
    clock = FakeClock()
    flight = Flight(start=clock() + dt.timedelta(days=2), end=clock() + dt.timedelta(days=4))
    d = decider([campaign(1, budget=Budget(metric="impressions", total=240), pacing="even", flight=flight)], clock)
    billed = [asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400)) for _ in range(3)]
    assert billed == [True, False, False]


@pytest.mark.parametrize("budget", [Budget(metric="impressions", daily=10), Budget(metric="impressions", total=10)])
def test_a_pixel_when_the_campaign_has_no_serving_time_is_billed(budget):
    """A weekday campaign's ad shown on Friday night, its pixel after midnight: Saturday has no
    serving time (for the total: a reload left none in the flight), so nothing is due by pacing,
    and the pixel is still billed within the budget."""
    clock = FakeClock(dt.datetime(2026, 11, 28, 5, 30, tzinfo=UTC))  # Saturday 00:30 in New York
    weekdays = Targeting(dayparts=[Daypart(days=["mon", "tue", "wed", "thu", "fri"], start="00:00", end="24:00")])
    flight = Flight(start=dt.datetime(2026, 11, 28, 5, 0, tzinfo=UTC), end=dt.datetime(2026, 11, 30, 5, 0, tzinfo=UTC))
    d = decider([campaign(1, budget=budget, pacing="even", flight=flight, targeting=weekdays)], clock)
    assert asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400))


def test_pixels_before_the_days_serving_time_are_paced_as_at_its_start():
    """A 09:00-17:00 campaign's ad seen last night, its pixel at 08:00: nothing is due yet today."""
    clock = FakeClock(dt.datetime(2026, 11, 25, 13, 0, tzinfo=UTC))  # 08:00 in New York
    office = Targeting(dayparts=[Daypart(start="09:00", end="17:00")])
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=80), pacing="even", targeting=office)], clock)
    billed = [asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400)) for _ in range(2)]
    assert billed == [True, False]


@pytest.mark.parametrize("fields, local, due", [
    ({}, (0, 30), 0.5 / 24),  # a stretch of the plan must end where the next one starts
    ({"targeting": Targeting(dayparts=[Daypart(start="06:30", end="08:00")])}, (7, 15), 0.5),  # from mid-hour
])
def test_the_paced_limit_is_the_exact_share_of_the_serving_time_due(fields, local, due):
    """A budget of a million resolves the plan to a millionth: no second of serving time is
    counted twice or left out."""
    c = campaign(1, budget=Budget(metric="impressions", daily=1_000_000), pacing="even", **fields)
    ledger = Ledger("America/New_York")
    moment = ledger.moment(dt.datetime(2026, 11, 25, 5 + local[0], local[1], tzinfo=UTC))
    assert [x.limit for x in ledger.limits(c, None, moment) if x.limit is not None] == [
        math.floor(1_000_000 * due) + 1]


@pytest.mark.parametrize("budget", [Budget(metric="impressions", daily=10), Budget(metric="impressions", total=10)])
def test_a_pixel_at_the_second_the_flight_ends_is_billed(budget):
    """The flight ends on a local hour: the plan's last stretch ends there, and a pixel that
    very second is paced as at the end of the flight, not refused or failed."""
    end = dt.datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # 17:00 in New York
    clock = FakeClock(end)
    flight = Flight(start=end - dt.timedelta(days=2), end=end)
    d = decider([campaign(1, budget=budget, pacing="even", flight=flight)], clock)
    assert asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400))


def test_a_daypart_shorter_than_an_hour_is_paced_too():
    clock = FakeClock(dt.datetime(2026, 11, 25, 17, 11, 15, tzinfo=UTC))  # 12:11:15 in New York
    lunch = Targeting(dayparts=[Daypart(start="12:00", end="12:30")])
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=60), pacing="even", targeting=lunch)], clock)
    assert serve_and_count(d, request(), 100) == 23  # 22.5 of 60 due, one ahead


def test_a_flight_over_a_dst_change_weighs_the_days_real_hours():
    """Three weeks from local midnight with the fall-back Sunday inside: 505 hours, not 504 (whole
    days are weighed once per weekday and day shape, and that Sunday has another shape)."""
    start = dt.datetime(2026, 10, 24, 4, 0, tzinfo=UTC)  # Saturday 00:00 in New York
    flight = Flight(start=start, end=start + dt.timedelta(days=21, hours=1))
    c = campaign(1, budget=Budget(metric="impressions", total=500_000), pacing="even", flight=flight)
    ledger = decider([c]).ledger
    moment = ledger.moment(start + dt.timedelta(hours=1, minutes=30))
    bounds = [limit.limit for limit in ledger.limits(c, None, moment) if limit.limit is not None]
    assert bounds == [math.floor(500_000 * 1.5 / 505) + 1]


def test_pixels_arriving_after_the_flight_are_billed_within_the_total():
    """A page left open past the flight's end still shows its ad: the pixel counts, up to the total."""
    clock = FakeClock()
    flight = Flight(start=clock(), end=clock() + dt.timedelta(days=2))
    d = decider([campaign(1, budget=Budget(metric="impressions", total=3), pacing="even", flight=flight)], clock)
    clock.advance(days=3)
    billed = [asyncio.run(d.bill("impression", 1, None, f"hit{next(HITS)}", 86400)) for _ in range(4)]
    assert billed == [True, True, True, False]


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


def deliver(d, clock, hours: int, every: float = 10.0) -> list[int]:
    """Ample traffic: a page view every ``every`` seconds for ``hours`` hours, each shown ad charged.

    The fills of each hour, in one event loop (thousands of decisions stay fast).
    """
    async def run() -> list[int]:
        served = []
        need = [AdNeed("s0", ("300x250",), None)]
        for _ in range(hours):
            count = 0
            for _ in range(int(3600 / every)):
                fill = (await d.decide(request(), need))["s0"]
                if fill is not None:
                    count += 1
                    assert await d.bill("impression", fill.campaign.id, "reader-1", f"hit{next(HITS)}",
                                        86400, fill.reservation)
                clock.advance(seconds=every)
            served.append(count)
        return served
    return asyncio.run(run())


NY_MIDNIGHT = dt.datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # Nov 24, 00:00 in New York


def test_even_pacing_spreads_the_daily_budget():
    clock = FakeClock(NY_MIDNIGHT)
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="even")], clock)
    # on the straight line (one unit ahead at most): 10 an hour, from the first hour to the last
    assert deliver(d, clock, 24, every=180) == [10] * 24
    assert sum(deliver(d, clock, 1, every=180)) == 10  # the next local day starts afresh


@pytest.mark.parametrize("fields, minutes", [
    ({}, {h: 60 for h in range(24)}),  # the first hour is not doubled, the last not starved
    ({"targeting": Targeting(dayparts=[Daypart(start="17:00", end="23:00")])},
     {h: 60 for h in range(17, 23)}),
    ({"flight": Flight(start=NY_MIDNIGHT + dt.timedelta(hours=12), end=NY_MIDNIGHT + dt.timedelta(days=9))},
     {h: 60 for h in range(12, 24)}),
    ({"targeting": Targeting(dayparts=[Daypart(start="06:30", end="08:00"),  # overlapping windows
                                       Daypart(start="07:30", end="09:00")])}, {6: 30, 7: 60, 8: 60}),
])
def test_even_pacing_runs_over_the_hours_a_campaign_can_serve(fields, minutes):
    """Daily 1,000 under ample traffic: each hour delivers its share of the minutes it can serve."""
    clock = FakeClock(NY_MIDNIGHT)
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=1000), pacing="even", **fields)],
                clock)
    served = deliver(d, clock, 24, every=5)
    plan = [1000 * minutes.get(h, 0) / sum(minutes.values()) for h in range(24)]
    assert sum(served) == 1000
    for delivered, planned in zip(served, plan):
        assert abs(delivered - planned) <= 2, (served, plan)


def test_even_pacing_follows_the_sites_hourly_traffic():
    # a week of log with an evening peak: 4x the page views from 18:00 to 22:00, New York time
    start_hour = int(NY_MIDNIGHT.timestamp()) // 3600 - 7 * 24
    shape = {h: 100 * (4 if 18 <= (h - start_hour) % 24 < 22 else 1)
             for h in range(start_hour, start_hour + 7 * 24)}
    ledger = Ledger("America/New_York", traffic=shape)
    assert ledger.hourly[19] == 4 * ledger.hourly[3]
    clock = FakeClock(NY_MIDNIGHT)
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=360), pacing="even")], clock)
    d.ledger = ledger
    served = deliver(d, clock, 24, every=30)
    assert sum(served) == 360 and served[:3] == [10, 10, 10] and served[18:22] == [40] * 4
    assert Ledger("America/New_York", traffic={start_hour: 500}).hourly == (1.0,) * 24  # too little log


def test_hourly_traffic_is_averaged_per_local_hour_over_the_days_the_log_saw_it():
    """One whole day of log is enough, 23 hours are not; an hour missing from the log still plans
    1% of an average hour; three and a half days count each hour over the days that showed it."""
    first = int(NY_MIDNIGHT.timestamp()) // 3600
    day = {h: 400 if (h - first) % 24 == 19 else 100 for h in range(first, first + 24) if h - first != 3}
    hourly = Ledger("America/New_York", traffic=day).hourly
    assert hourly[19] == 400 and hourly[3] == pytest.approx(0.01 * (22 * 100 + 400) / 24)
    assert hourly[:3] + hourly[4:19] + hourly[20:] == (100.0,) * 22
    short = {h: 100 * (h - first + 1) for h in range(first, first + 23)}
    assert Ledger("America/New_York", traffic=short).hourly == (1.0,) * 24
    noon_peak = {h: 200 if (h - first) % 24 == 12 else 100 for h in range(first, first + 84)}  # 00-11 seen 4 times
    assert Ledger("America/New_York", traffic=noon_peak).hourly == (100.0,) * 12 + (200.0,) + (100.0,) * 11
    spring = int(dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC).timestamp()) // 3600  # local midnight; no 02:00
    hourly = Ledger("America/New_York", traffic={h: 100 for h in range(spring, spring + 24)}).hourly
    assert hourly[2] == pytest.approx(0.01 * 23 * 100 / 24) and hourly[:2] + hourly[3:] == (100.0,) * 23


def test_even_pacing_of_a_total_runs_over_the_flights_eligible_hours():
    clock = FakeClock(NY_MIDNIGHT)
    flight = Flight(start=NY_MIDNIGHT, end=NY_MIDNIGHT + dt.timedelta(days=2))
    evening = Targeting(dayparts=[Daypart(start="20:00", end="22:00")])
    d = decider([campaign(1, budget=Budget(metric="impressions", total=400), pacing="even",
                          flight=flight, targeting=evening)], clock)
    served = deliver(d, clock, 48, every=20)
    assert served[20:22] == [100, 100] and served[44:46] == [100, 100] and sum(served) == 400


def test_even_pacing_never_allows_more_than_the_daily_budget():
    clock = FakeClock(dt.datetime(2026, 11, 25, 4, 30, tzinfo=UTC))  # 23:30 in New York
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="even")], clock)
    served = serve_and_count(d, request(), 400)
    clock.advance(minutes=29)
    assert served + serve_and_count(d, request(), 400) == 240  # the slack never reaches past the day


def test_asap_pacing_spends_at_once():
    clock = FakeClock(dt.datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=240), pacing="asap")], clock)
    assert serve_and_count(d, request(), 400) == 240


@pytest.mark.parametrize("day, hours", [((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 6, 1), 24)])
@pytest.mark.parametrize("utc_hour", [17, 26])  # noon, and 21:00-22:00 local: the next UTC day
def test_local_day_length_across_dst(day, hours, utc_hour, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the machine's zone must not matter
    time.tzset()
    try:
        ledger = Ledger("America/New_York")
        now = dt.datetime(*day, tzinfo=UTC) + dt.timedelta(hours=utc_hour)
        start, end = ledger.day_bounds(now)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert start <= now < end and (end - start) == dt.timedelta(hours=hours)
    assert start.utcoffset() == end.utcoffset() == dt.timedelta(0)  # in UTC, not the machine's zone
    assert start.astimezone(ledger.tz).replace(tzinfo=None) == dt.datetime(*day)  # local midnight


def test_daily_budget_resets_at_local_midnight_not_utc():
    clock = FakeClock(dt.datetime(2026, 11, 24, 23, 0, tzinfo=UTC))  # 18:00 in New York
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=5), pacing="asap")], clock)
    assert serve_and_count(d, request(), 10) == 5
    clock.advance(hours=2)  # 01:00 UTC: a new UTC day, same New York day
    assert serve_and_count(d, request(), 10) == 0
    clock.advance(hours=4)  # 05:00 UTC = local midnight
    assert serve_and_count(d, request(), 10) == 5


@pytest.mark.parametrize("midnight, hours", [(dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC), 23),
                                             (dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC), 25)])
def test_even_pacing_over_a_dst_day(midnight, hours):
    clock = FakeClock(midnight)  # local midnight in New York
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=10 * hours), pacing="even")], clock)
    assert deliver(d, clock, hours, every=120) == [10] * hours


def test_an_hourly_cap_counts_the_repeated_fall_back_hour_apart():
    clock = FakeClock(dt.datetime(2026, 11, 1, 4, 30, tzinfo=UTC))  # 00:30 EDT; 01:00 comes twice
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=1, period="hour"))], clock)
    served = []
    for _ in range(8):  # 00:30 EDT, 01:00 EDT, 01:30 EDT, 01:00 EST, 01:30 EST, 02:00 EST, ...
        served.append(serve_and_count(d, request(), 1))
        clock.advance(minutes=30)
    assert served == [1, 1, 0, 1, 0, 1, 0, 1]  # one in each real hour


def charged(limits) -> tuple[dict[str, int], dict[str, int]]:
    """What ``Ledger.charge`` adds, as (key -> amount, key -> seconds to live)."""
    return {x.key: x.cost for x in limits}, {x.key: x.ttl for x in limits}


def test_charges_name_their_counters_and_expiries():
    """What one hit adds, and for how long each counter lives: totals a week past the flight,
    days two days, a cap its period plus an hour (a flight-long cap: the flight's life)."""
    clock = FakeClock()  # 2026-11-25 15:00 UTC, 10:00 in New York
    ledger = Ledger("America/New_York")
    moment = ledger.moment(clock())
    flight_left = int((dt.datetime(2027, 1, 1, tzinfo=UTC) - clock()).total_seconds()) + 7 * 86400
    cpm = campaign(1, price=4.0, frequency_cap=FrequencyCap(count=3, period="day"))
    assert charged(ledger.charge(cpm, "impression", "u", moment)) == (
        {"c1:total:impressions": 1, "c1:day:2026-11-25:impressions": 1,
         "c1:total:spend": 4000, "c1:day:2026-11-25:spend": 4000, "c1:cap:u:20261125": 1},  # micro-units
        {"c1:total:impressions": flight_left, "c1:day:2026-11-25:impressions": 2 * 86400,
         "c1:total:spend": flight_left, "c1:day:2026-11-25:spend": 2 * 86400, "c1:cap:u:20261125": 90000})
    assert charged(ledger.charge(cpm, "click", "u", moment)) == (
        {"c1:total:clicks": 1, "c1:day:2026-11-25:clicks": 1},
        {"c1:total:clicks": flight_left, "c1:day:2026-11-25:clicks": 2 * 86400})
    cpc = campaign(2, frequency_cap=FrequencyCap(count=3, period="flight"))
    cpc.price = Price(model="cpc", amount=0.5)
    increments, ttl = charged(ledger.charge(cpc, "click", "u", moment))
    assert increments["c2:total:spend"] == increments["c2:day:2026-11-25:spend"] == 500_000
    assert "c2:total:spend" not in charged(ledger.charge(cpc, "impression", "u", moment))[0]
    assert charged(ledger.charge(cpc, "impression", "u", moment))[1]["c2:cap:u:all"] == flight_left + 3600
    ending = campaign(3, flight=Flight(start=dt.datetime(2026, 1, 1, tzinfo=UTC),
                                       end=clock() - dt.timedelta(days=6)))
    ttl = charged(ledger.charge(ending, "impression", None, moment))[1]
    assert ttl["c3:total:impressions"] == 2 * 86400  # a day past the week after: a day counter's life


@pytest.mark.parametrize("period, bucket, ttl", [
    ("hour", "2026112510-0500", 3600 + 3600), ("day", "20261125", 86400 + 3600),
    ("week", "2026-W48", 7 * 86400 + 3600)])
def test_a_cap_counts_in_its_local_period(period, bucket, ttl):
    clock = FakeClock()  # Wednesday 2026-11-25, 10:00 in New York (ISO week 48)
    ledger = Ledger("America/New_York")
    capped = campaign(1, frequency_cap=FrequencyCap(count=3, period=period))
    increments, ttls = charged(ledger.charge(capped, "impression", "u", ledger.moment(clock())))
    assert increments[f"c1:cap:u:{bucket}"] == 1 and ttls[f"c1:cap:u:{bucket}"] == ttl
    limits = {x.key: x.limit for x in ledger.limits(capped, "u", ledger.moment(clock()))}
    assert limits[f"c1:cap:u:{bucket}"] == 3


@pytest.mark.parametrize("period", ["hour", "day", "week", "flight"])
def test_forgetting_a_reader_finds_their_cap_counters_and_nobody_elses(period):
    """Erasure scans for the glob (Redis SCAN MATCH) and keeps the keys the exact test accepts:
    ids may hold ':' or be the start of a longer id, or contain ':cap:' themselves."""
    c = campaign(1, frequency_cap=FrequencyCap(count=3, period=period))
    ledger = decider([c]).ledger
    moment = ledger.moment(FakeClock()())
    readers = ["reader-1", "reader-10", "a", "a:b", "x:cap:reader-1"]
    keys = {reader: [limit.key for limit in ledger.limits(c, reader, moment)] for reader in readers}
    campaign_counters = set.intersection(*(set(k) for k in keys.values()))
    for reader in readers:
        glob, exact = reader_keys(reader)
        found = [key for listed in keys.values() for key in listed if fnmatchcase(key, glob) and exact(key)]
        assert found == [key for key in keys[reader] if key not in campaign_counters]
        assert len(found) == 1


def test_dayparts_are_paced_in_local_minutes_when_hours_start_on_the_half_hour():
    """Lord Howe Island moves its clocks by half an hour: after the spring change every hour of
    the day starts at :30, and a 12:00-13:00 lunch daypart spans two of them."""
    clock = FakeClock(dt.datetime(2026, 10, 4, 1, 15, tzinfo=UTC))  # Sunday 12:15 there, the change at 02:00
    lunch = Targeting(dayparts=[Daypart(start="12:00", end="13:00")])
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=60), pacing="even", targeting=lunch)],
                clock, timezone="Australia/Lord_Howe")
    assert serve_and_count(d, request(), 100) == 16  # 15 of 60 due, one ahead


budgets = st.builds(Budget, metric=st.sampled_from(["impressions", "clicks", "spend"]),
                    daily=st.one_of(st.none(), st.sampled_from([3, 48, 1000, 10**6])),
                    total=st.one_of(st.none(), st.sampled_from([7, 500, 10**8])))
paced = st.builds(lambda budget, pacing, daypart, price, cap, start, days: campaign(
    1, budget=budget, pacing=pacing, price=price,
    frequency_cap=FrequencyCap(count=3, period=cap) if cap else None,
    targeting=Targeting(dayparts=[Daypart(start=daypart, end="23:00")]) if daypart else Targeting(),
    flight=Flight(start=NY_MIDNIGHT + dt.timedelta(minutes=start), end=NY_MIDNIGHT + dt.timedelta(days=days))),
    budgets, st.sampled_from(["even", "asap"]), st.sampled_from([None, "06:30", "17:00"]),
    st.sampled_from([0.5, 2.0]), st.sampled_from([None, "hour", "flight"]),
    st.integers(-3000, 3000), st.integers(1, 5))
steps = st.lists(st.integers(-600, 4 * 3600), min_size=1, max_size=40)  # seconds: mostly forward


@settings(max_examples=150, deadline=None)
@given(paced, steps)
def test_a_ledger_kept_across_seconds_allows_what_a_fresh_one_allows(c, steps):
    """What a long-lived ledger answers at each moment is what a new ledger answers then (counter
    expiries aside: a counter may live on a little longer), whatever it worked out before."""
    def bounds(limits):
        return None if limits is None else [limit[:4] for limit in limits]

    kept, now = Ledger("America/New_York"), NY_MIDNIGHT + dt.timedelta(microseconds=250_000)
    for step in steps:  # whole seconds: a ledger works its bounds out at most once a second
        now += dt.timedelta(seconds=step)
        fresh = Ledger("America/New_York")
        for user in ("u", None):
            found = kept.reservable(c, user, kept.moment(now))
            expected = fresh.reservable(c, user, fresh.moment(now))
            assert found is None if expected is None else [bounds(part) for part in found] == [
                bounds(part) for part in expected]
            for event in ("impression", "click"):
                assert bounds(kept.charge(c, event, user, kept.moment(now))) == bounds(
                    fresh.charge(c, event, user, fresh.moment(now)))


@pytest.mark.parametrize("line, budget", [("day_share", Budget(metric="impressions", daily=48)),
                                          ("flight_share", Budget(metric="impressions", total=96))])
def test_the_pacing_line_is_worked_out_again_only_when_the_limit_can_move(line, budget, monkeypatch):
    """48 a day (or 96 over a two-day flight) moves the paced limit every half hour: a ledger
    asked every second for an hour works the line out about once per move, not every second."""
    ledger = Ledger("America/New_York")
    worked = []
    share = getattr(ledger, line)
    monkeypatch.setattr(ledger, line, lambda *args: worked.append(args) or share(*args))
    c = campaign(1, budget=budget, pacing="even",
                 flight=Flight(start=NY_MIDNIGHT, end=NY_MIDNIGHT + dt.timedelta(days=2)))
    for second in range(3600):
        assert ledger.reservable(c, "u", ledger.moment(NY_MIDNIGHT + dt.timedelta(hours=9, seconds=second)))
    assert len(worked) <= 6


@settings(max_examples=500, deadline=None)
@given(st.integers(0, EXACT_CAP - 1), st.integers(1, 10**6), st.integers(0, 10**6), st.integers(-3, 3),
       st.floats(0, 1))
def test_pacing_in_integers_gives_what_decimals_give(cap, unit, k, nudge, drawn):
    """A paced limit is worked out in integers when the cap is whole and below EXACT_CAP (a big
    book's paced campaigns redo it every second): the same limit and the same next share as the
    28-digit Decimal arithmetic, shares right at and around a whole unit of the cap included."""
    unit = min(unit, cap) or 1
    budget = Decimal(cap)
    near = min(k, cap) / cap if cap else 0.0  # a share that lands on a whole unit, then nudged a few floats
    for share in (drawn, min(1.0, max(0.0, near + nudge * math.ulp(near or 1e-300)))):
        limit = _paced(budget, share, unit)
        assert _paced(budget, share, unit, _whole(budget)) == limit
        if cap:
            assert (limit - unit + 1) / _whole(budget) == float((limit - unit + 1) / budget)
    assert _whole(Decimal(EXACT_CAP)) is None and _whole(Decimal("2.5")) is None


def test_a_clock_set_back_within_the_hour_reads_the_paced_limit_of_then():
    """A decider keeps a campaign's bounds while they hold, not past what the ledger says: set
    back from 09:40 to 09:10, 48 a day paced evenly allows 19 by then, not the 20 of 09:40."""
    clock = FakeClock(NY_MIDNIGHT + dt.timedelta(hours=9, minutes=40))
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=48), pacing="even",
                          flight=Flight(start=NY_MIDNIGHT, end=NY_MIDNIGHT + dt.timedelta(days=2)))], clock)
    assert serve_and_count(d, request(), 1) == 1
    clock.now = NY_MIDNIGHT + dt.timedelta(hours=9, minutes=10)
    assert serve_and_count(d, request(), 30) == 18


def test_a_reader_reserves_what_is_checked_in_one_tuple_unless_clicks_are_checked_too():
    """Where every bounded counter is impression-metered (caps, impression budgets, CPM spend) the
    decision checks exactly what it holds: one tuple serves both, so a capped ad adds its reader's
    counter once. A click budget is checked at the decision but held by no reservation."""
    cap = FrequencyCap(count=3, period="day")
    ledger = Ledger("America/New_York")
    moment = ledger.moment(dt.datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    shown = campaign(1, frequency_cap=cap, budget=Budget(metric="impressions", daily=100))
    checks, holds = ledger.bounds(shown, moment).of("a")
    assert holds is checks and [limit.key for limit in checks] == ["c1:day:2026-11-24:impressions",
                                                                   "c1:cap:a:20261124"]
    clicked = campaign(2, frequency_cap=cap, budget=Budget(metric="clicks", daily=7), pacing="asap")
    clicked.price = Price(model="cpc", amount=1.0)
    checks, holds = ledger.bounds(clicked, moment).of("a")
    assert [limit.event for limit in checks] == ["click", "impression"]
    assert holds == checks[1:] and holds[0].key == "c2:cap:a:20261124"


def test_a_campaigns_bounds_hold_no_object_of_the_model():
    """A decision reads a capped campaign's bounds on every page that draws it: they carry the
    cap's count and its consent rule themselves, so a 10,000-campaign book's walk touches no
    FrequencyCap (and its attribute dict) per reserved ad, and ``of`` answers as before."""
    for without_consent in ("skip", "serve"):
        ledger = Ledger("America/New_York")
        capped = campaign(1, frequency_cap=FrequencyCap(count=3, period="day", without_consent=without_consent))
        bounds = ledger.bounds(capped, ledger.moment(dt.datetime(2026, 11, 24, 15, 0, tzinfo=UTC)))
        assert all(type(part) in (tuple, str, int, float, bool, type(None)) for part in bounds)
        assert bounds.of(None) == (None if without_consent == "skip" else ((), ()))
        (cap,), _holds = bounds.of("a")
        assert cap == Limit("c1:cap:a:20261124", 3, 1, "impression", 86400 + 3600)


def test_a_moment_is_worked_out_once_per_second_whatever_the_clocks_zone():
    """Decisions read a UTC clock, replays UTC datetimes, reports other zones: the same second
    gives the same Moment, and the next second a new one, from either side of its edges."""
    ledger = Ledger("America/New_York")
    at = dt.datetime(2026, 11, 24, 15, 0, 7, 999_999, tzinfo=UTC)
    first = ledger.moment(at)
    assert ledger.moment(at - dt.timedelta(microseconds=999_999)) is first
    assert ledger.moment(at.astimezone(ZoneInfo("Asia/Kolkata"))) is first
    later = ledger.moment(at + dt.timedelta(microseconds=1))
    assert later is not first and later.seconds == (at + dt.timedelta(microseconds=1)).timestamp()
    assert ledger.moment(at) is not later and ledger.moment(at).seconds == at.timestamp()


def test_campaigns_capped_in_one_period_share_its_cap_key_ending_and_ttl():
    """A big book's walk reads a capped campaign's cap key ending and ttl once per capped ad:
    one object each for every campaign of a period, not one per campaign (each one more likely
    out of cache)."""
    moment = (ledger := Ledger("America/New_York")).moment(FakeClock()())
    a, b = (ledger.bounds(campaign(n, frequency_cap=FrequencyCap(count=3, period="day")), moment) for n in (1, 2))
    assert (a.cap_suffix, a.cap_ttl) == (":20261125", 86400 + 3600)
    assert a.cap_suffix is b.cap_suffix and a.cap_ttl is b.cap_ttl
