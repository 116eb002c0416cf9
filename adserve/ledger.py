"""Budgets, pacing and frequency caps: which counters a campaign has, and what they allow.

Counters live in a ``StateStore`` under keys made here, so the decision code and the tracking
endpoints agree on them. Days are days in the site timezone, DST included: a spring-forward day
has 23 hours, a fall-back day 25, and an hourly cap counts the repeated hour apart.

Even pacing spreads a budget over the time the campaign can serve (its dayparts, clipped to its
flight), weighted by the site's own traffic in each local hour where the log shows it: a daily
1,000 limited to 17:00-23:00 plans 167 an hour there, not 42 an hour over the whole day (which
let the first evening hour take 792). The counter may run one unit ahead of the line, so a
campaign starts serving at once and its last unit fits before the day ends.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping, NamedTuple
from zoneinfo import ZoneInfo

from .model import Campaign
from .targeting import CompiledTargeting

_PERIOD_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
_DAY_TTL = 2 * 86400
_CAP_TTLS = {period: seconds + 3600 for period, seconds in _PERIOD_SECONDS.items()}  # one int each, shared
TRAFFIC_FLOOR = 0.01  # an hour the log shows empty still plans this share of an average hour
MOVE_MARGIN = 1.0  # seconds: counters are worked out again this long before a paced limit moves (float error)


@dataclass(frozen=True)
class Moment:
    """One instant with the local calendar facts that counter keys and pacing need.

    Computed once per request, not once per campaign: strftime and timezone arithmetic are the
    expensive part of a budget check.
    """
    now: dt.datetime
    local: dt.datetime        # ``now`` in the site timezone (dayparts read it)
    day: str                  # local date, ISO
    buckets: dict[str, str]   # frequency-cap period -> its current bucket
    seconds: float            # ``now`` in Unix seconds
    date: dt.date             # the local date


@dataclass(frozen=True)
class _Plan:
    """Stretches of time a campaign can serve, each with the traffic weight expected in it."""
    starts: tuple[float, ...]   # Unix seconds
    ends: tuple[float, ...]
    before: tuple[float, ...]   # weight of the stretches before each one
    weights: tuple[float, ...]
    total: float                # weight of the whole plan (read at every paced limit's move)

    def done(self, now: float) -> float:
        """The weight of the plan that lies before ``now``."""
        i = bisect.bisect_right(self.starts, now) - 1
        if i < 0:
            return 0.0
        elapsed = min(1.0, (now - self.starts[i]) / (self.ends[i] - self.starts[i]))
        return self.before[i] + self.weights[i] * elapsed

    def share(self, now: float) -> float:
        """How much of the plan is due by ``now``; all of it when the plan is empty."""
        total = self.total
        return self.done(now) / total if total > 0 else 1.0

    def reaches(self, weight: float) -> float:
        """The first moment the weight done reaches ``weight`` (inf: never)."""
        i = bisect.bisect_left(self.before, weight) - 1
        if i < 0:
            return -math.inf
        if weight > self.before[i] + self.weights[i]:
            return math.inf
        if self.weights[i] <= 0:
            return self.starts[i]
        return self.starts[i] + (weight - self.before[i]) / self.weights[i] * (self.ends[i] - self.starts[i])


EVENTS = ("impression", "click")


class Limit(NamedTuple):
    """One counter an event moves: allowed iff ``value + cost <= limit`` (None: counted only).

    ``event`` says what consumes it. Impression-metered counters (caps, impression budgets,
    CPM spend, their pacing) are reserved when a decision picks the campaign and confirmed by
    the pixel; click-metered ones (click budgets, CPC spend) are checked at the decision and
    charged by the click. A tuple, not an object: decisions make and read thousands a second.
    """
    key: str
    limit: int | None  # in the counter's units: spend in micro-units
    cost: int
    event: str  # "impression" or "click"
    ttl: int    # seconds a counter created now lives


class _Counters(NamedTuple):
    """A campaign's reader-independent counters, as decisions and charges read them, from one
    moment until a paced limit moves (or the local day ends). A tuple: a big book's paced
    campaigns each make one every second or so."""
    campaign: Campaign
    moment: Moment             # when they were worked out
    until: float               # Unix seconds: a paced limit may move from then on
    every: tuple[Limit, ...]   # bounded or not: an event moves each of its own
    reservable: tuple[tuple[Limit, ...], tuple[Limit, ...]]  # what a decision checks (the bounded
    #                            ones) and reserves (of those, the impression-metered ones)
    paced: tuple[tuple[int, Decimal, str, int | None], ...]  # (position in ``every``, budget, its
    #                            pacing line, the budget as an int when ``_paced`` may use integers)
    cap_prefix: str            # a reader's frequency-cap key is this + reader + ":" + period bucket
    cap_ttl: int               # seconds a cap counter created now lives


class Bounds(NamedTuple):
    """What a decision checks and reserves of one campaign at one moment, for any reader: the
    shared bounded counters, and how its frequency cap (if any) names a reader's counter.

    The same for every moment of the same local hour from ``since`` until ``until``: counters
    change when a paced limit moves (at most once a second: a moment is one) or the day ends, a
    cap's key when its period's bucket does (every bucket changes only where a local hour does).
    Flat, with the cap's parts and no model object: a big book's walk reads one per reserved ad,
    and each object it reaches is one more likely out of cache."""
    checks: tuple[Limit, ...]  # the bounded counters
    holds: tuple[Limit, ...]   # of those, the impression-metered ones (reserved)
    cap_count: int | None      # a reader's impressions allowed per cap period (None: no cap)
    cap_skip: bool             # a cap that cannot be checked (no reader) fails closed
    cap_prefix: str            # a reader's cap key: prefix + reader + suffix (the period's bucket)
    cap_suffix: str
    cap_ttl: int
    since: float               # Unix seconds
    until: float

    def of(self, user: str | None) -> tuple[tuple[Limit, ...], tuple[Limit, ...]] | None:
        """(checks, holds) for reader ``user`` (None: no id, or no consent to use it); None when
        the campaign may not serve that reader: a cap that cannot be checked fails closed unless
        the campaign says ``without_consent: serve``. With a cap and a reader, the reader's cap
        counter comes last."""
        count = self.cap_count
        if count is None:
            return self.checks, self.holds
        if user is None:
            return None if self.cap_skip else (self.checks, self.holds)
        limit = (_new(Limit, (f"{self.cap_prefix}{user}{self.cap_suffix}", count, 1, "impression", self.cap_ttl)),)
        checks = self.checks + limit
        return checks, checks if self.holds is self.checks else self.holds + limit


# Limits, counters and bounds made without NamedTuple's Python-level ``__new__`` (``_new(Limit,
# (...))``): a big book's pages make a cap Limit per capped ad, and its paced campaigns new
# counters every second or so. Called directly: a partial concatenated its arguments into one
# more tuple on every call.
_new = tuple.__new__


UNBOUNDED = Bounds((), (), None, False, "", "", 0, -math.inf, math.inf)  # no caps nor budgets: nothing to read


class Ledger:
    def __init__(self, timezone: str, traffic: Mapping[int, float] | None = None) -> None:
        """``traffic``: page views seen in each Unix hour (``ts // 3600``), from the event log."""
        self.tz = ZoneInfo(timezone)
        self.hourly = _hourly_weights(traffic or {}, self.tz)
        self._last: Moment | None = None
        self._edges: tuple[dt.datetime, dt.datetime] = ()  # of ``_last``'s second, in UTC
        self._targeting: dict[int, CompiledTargeting] = {}
        self._plans: dict[tuple, _Plan] = {}  # by campaign and day, and by dayparts, day and flight edges
        self._day_hours: dict[dt.date, tuple[tuple[float, int, int], ...]] = {}
        self._flight_weights: dict[tuple, tuple[float, dict[dt.date, float]]] = {}
        self._full_days: dict[tuple, float] = {}  # by dayparts, weekday and the day's local hours
        self._day_shapes: dict[dt.date, int] = {}
        self._shape_ids: dict[tuple, int] = {}
        self._known: dict[int, _Counters] = {}  # campaign id -> its counters at the last moment asked
        self._suffixes: dict[str, str] = {}  # a cap period's bucket -> ":" + it, one string for every campaign

    def moment(self, now: dt.datetime) -> Moment:
        """The calendar facts of ``now``, computed once per second (counters need no finer).

        A clock's UTC datetime is compared with the second's edges: its ``timestamp()`` cost ~2,000
        instructions, on every page."""
        last = self._last
        if last is not None and now.tzinfo is dt.timezone.utc and self._edges[0] <= now < self._edges[1]:
            return last
        seconds = now.timestamp()
        if last is not None and int(last.seconds) == int(seconds):
            return last
        local = now.astimezone(self.tz)
        if last is not None and last.day != local.date().isoformat():
            self._plans.clear()  # a new local day: yesterday's plans (and cap buckets) are done
            self._suffixes.clear()
        offset = local.strftime("%z")  # the fall-back night's two 01:00 hours are two buckets
        self._last = Moment(now=now, local=local, day=local.date().isoformat(),
                            buckets={"hour": local.strftime("%Y%m%d%H") + offset,
                                     "day": local.strftime("%Y%m%d"),
                                     "week": "%d-W%02d" % local.isocalendar()[:2], "flight": "all"},
                            seconds=seconds, date=local.date())
        start = dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc)
        self._edges = (start, start + dt.timedelta(seconds=1))  # where ``int(seconds)`` is the same
        return self._last

    def day_bounds(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Local midnight to next local midnight, in UTC (23 or 25 hours on DST days)."""
        return self._bounds(now.astimezone(self.tz).date())

    def _bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        start = dt.datetime.combine(day, dt.time(), self.tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz)
        return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)

    # -- pacing -------------------------------------------------------------------------------
    def day_share(self, campaign: Campaign, moment: Moment) -> float:
        """The share of today's budget even pacing allows by now."""
        return self._day_plan(campaign, moment.date).share(moment.seconds)

    def flight_share(self, campaign: Campaign, moment: Moment) -> float:
        """The share of the flight's total budget even pacing allows by now."""
        total, before = self._flight_plan(campaign)
        today = moment.local.date()
        done = before.get(today, total if moment.now >= campaign.flight.end else 0.0)
        if today in before:
            done += self._day_plan(campaign, today).done(moment.now.timestamp())
        return min(1.0, done / total) if total > 0 else 1.0

    def _flight_reaches(self, campaign: Campaign, moment: Moment, share: float) -> float:
        """When the flight's plan reaches ``share`` of the flight, if that is today (else inf)."""
        total, before = self._flight_plan(campaign)
        today = moment.local.date()
        if total <= 0 or today not in before:
            return math.inf
        return self._day_plan(campaign, today).reaches(share * total - before[today])

    def _flight_plan(self, campaign: Campaign) -> tuple[float, dict[dt.date, float]]:
        key = (self._compiled(campaign).dayparts, campaign.flight.start, campaign.flight.end)
        known = self._flight_weights.get(key)
        if known is None:
            known = self._flight_weights[key] = self._weigh_flight(campaign)
        return known

    def _weigh_flight(self, campaign: Campaign) -> tuple[float, dict[dt.date, float]]:
        """The flight's whole plan weight, and the weight of its days before each day.

        A day strictly inside the flight weighs what every day of its weekday and hours weighs,
        so a two-year flight costs a few lookups a day, not a plan a day.
        """
        flight = campaign.flight
        first, last = flight.start.astimezone(self.tz).date(), flight.end.astimezone(self.tz).date()
        targeting = self._compiled(campaign)
        dayparts = targeting.dayparts
        before: dict[dt.date, float] = {}
        total, day = 0.0, first
        while day <= last:
            before[day] = total
            if first < day < last:
                key = (dayparts, day.weekday(), self._shape(day))
                weight = self._full_days.get(key)
                if weight is None:
                    weight = self._full_days[key] = _plan(self._hours(day), self.hourly, targeting,
                                                          day.weekday(), -math.inf, math.inf).total
                total += weight
            else:
                total += self._day_plan(campaign, day, keep=False).total
            day += dt.timedelta(days=1)
        return total, before

    def _day_plan(self, campaign: Campaign, day: dt.date, keep: bool = True) -> _Plan:
        """When ``campaign`` can serve on local ``day``; shared by campaigns of equal dayparts and
        flight edges that day."""
        plan = self._plans.get((campaign.id, day))
        if plan is not None:
            return plan
        start, end = self._bounds(day)
        flight = campaign.flight
        clip = (max(flight.start, start), min(flight.end, end))
        dayparts = self._compiled(campaign).dayparts
        key = (dayparts, day, clip)
        plan = self._plans.get(key)
        if plan is None:
            plan = _plan(self._hours(day), self.hourly, self._compiled(campaign), day.weekday(),
                         clip[0].timestamp(), clip[1].timestamp())
            if keep:
                self._plans[key] = plan
        if keep:
            self._plans[(campaign.id, day)] = plan
        return plan

    def _hours(self, day: dt.date) -> tuple[tuple[float, int, int], ...]:
        """The real hours of a local day: (start in Unix seconds, local hour, local minute)."""
        hours = self._day_hours.get(day)
        if hours is None:
            start, end = (t.timestamp() for t in self._bounds(day))
            hours = self._day_hours[day] = tuple(
                (t, local.hour, local.minute)
                for t in range(int(start), int(end), 3600)
                for local in (dt.datetime.fromtimestamp(t, self.tz),))
        return hours

    def _shape(self, day: dt.date) -> int:
        """A small number naming the local hours of ``day``: equal for days of equal hours."""
        shape = self._day_shapes.get(day)
        if shape is None:
            hours = tuple((h, m) for _t, h, m in self._hours(day))
            shape = self._day_shapes[day] = self._shape_ids.setdefault(hours, len(self._shape_ids))
        return shape

    def _compiled(self, campaign: Campaign) -> CompiledTargeting:
        compiled = self._targeting.get(campaign.id)
        if compiled is None:
            compiled = self._targeting[campaign.id] = CompiledTargeting.compile(campaign.targeting)
        return compiled

    # -- limits -------------------------------------------------------------------------------
    def limits(self, campaign: Campaign, user: str | None, moment: Moment) -> tuple[Limit, ...] | None:
        """Every counter this campaign's impressions and clicks move, with the bound of each.

        None when the campaign may not serve this reader at all: a cap that cannot be checked
        (no reader id, or no consent to use it) fails closed unless the campaign says
        ``without_consent: serve``. Counters without a bound are still counted, so a budget
        added by a reload starts from what was already delivered.
        """
        bounds = self.bounds(campaign, moment)
        found = bounds.of(user)
        if found is None:
            return None
        return self._counters(campaign, moment).every + found[0][len(bounds.checks):]  # and the reader's cap

    def reservable(self, campaign: Campaign, user: str | None,
                   moment: Moment) -> tuple[tuple[Limit, ...], tuple[Limit, ...]] | None:
        """What a decision for this reader checks (the bounded counters) and what it reserves
        (the bounded impression-metered ones); None as for ``limits``."""
        return self.bounds(campaign, moment).of(user)

    def bounds(self, campaign: Campaign, moment: Moment) -> Bounds:
        """``reservable`` for any reader at ``moment``: a decision works it out once per campaign
        while it holds (``since``/``until``), and then only names each reader's cap counter."""
        counters = self._counters(campaign, moment)
        cap = campaign.frequency_cap
        count, skip, suffix = (None, False, "") if cap is None else \
            (cap.count, cap.without_consent == "skip", self._suffix(moment.buckets[cap.period]))
        return _new(Bounds, (*counters.reservable, count, skip, counters.cap_prefix, suffix, counters.cap_ttl,
                             counters.moment.seconds, max(counters.until, math.floor(moment.seconds) + 1)))

    def _suffix(self, bucket: str) -> str:
        """The end of a reader's cap key in ``bucket``: one string shared by every campaign's
        ``Bounds``, which a big book's walk reads once per capped ad (one object per campaign
        was one more likely out of cache)."""
        suffix = self._suffixes.get(bucket)
        if suffix is None:
            suffix = self._suffixes[bucket] = f":{bucket}"
        return suffix

    def _counters(self, campaign: Campaign, moment: Moment) -> _Counters:
        """The reader-independent counters, worked out again only when a paced limit may have
        moved, on a new local day, or when the clock went back; within a day only the paced
        limits are (a decision reads them, and reservations keep the keys).

        A paced limit moves when the budget's share of the pacing line passes its next whole
        unit: a daily 48 every half hour, so a big book's campaigns do not each redo this
        every second. Counters created later keep the expiry worked out then: a little longer.
        """
        known = self._known.get(campaign.id)
        if known is not None and (known.moment is moment or (
                known.campaign is campaign and known.moment.day == moment.day
                and known.moment.seconds <= moment.seconds < known.until)):
            return known
        until = math.inf
        if known is not None and known.campaign is campaign and known.moment.day == moment.day:
            every, paced = list(known.every), known.paced
            for position, cap, line, whole in paced:
                key, _, cost, event, ttl = every[position]
                limit, moves = self._bound(campaign, cap, line, cost, moment, whole)
                every[position] = _new(Limit, (key, limit, cost, event, ttl))
                if moves < until:
                    until = moves
            cap_ttl = known.cap_ttl
        else:
            flight_left = _flight_left(campaign, moment)
            every, lines = [], []
            for event in EVENTS:
                for metric, cost in _costs(campaign, event).items():
                    for key, ttl, period in ((_total_key(campaign, metric), flight_left, "total"),
                                             (_day_key(campaign, metric, moment), _DAY_TTL, "day")):
                        bound = self._budget(campaign, metric, period)
                        limit = None
                        if bound is not None:
                            whole = _whole(bound[0])
                            limit, moves = self._bound(campaign, *bound, cost, moment, whole)
                            until = min(until, moves)
                            if bound[1] is not None:
                                lines.append((len(every), *bound, whole))
                        every.append(Limit(key, limit, cost, event, ttl))
            paced = tuple(lines)
            cap = campaign.frequency_cap
            cap_ttl = 0 if cap is None else _CAP_TTLS.get(cap.period) or flight_left + 3600
        checks = tuple([c for c in every if c.limit is not None])
        holds = tuple([c for c in checks if c.event == "impression"])
        if len(holds) == len(checks):  # mostly all: then the same tuple, which Bounds.of concatenates once
            holds = checks
        # no paced limit: the one math.inf object (inf - 1.0 is another float, read cold each draw)
        known = self._known[campaign.id] = _new(_Counters, (
            campaign, moment, until - MOVE_MARGIN if until < math.inf else math.inf, tuple(every), (checks, holds),
            paced, known.cap_prefix if known is not None else f"c{campaign.id}:cap:", cap_ttl))
        return known

    def charge(self, campaign: Campaign, event: str, user: str | None,
               moment: Moment) -> tuple[Limit, ...] | None:
        """The counters one ``impression`` or ``click`` of this campaign moves, with their bounds."""
        limits = self.limits(campaign, user, moment)
        return None if limits is None else tuple(limit for limit in limits if limit.event == event)

    @staticmethod
    def _budget(campaign: Campaign, metric: str, period: str) -> tuple[Decimal, str | None] | None:
        """The budget bounding ``metric`` over ``period`` ("total" or "day") in its counter's
        units, and the pacing line that spreads it ("day", "flight"; None: all at once)."""
        budget = campaign.budget
        amount = None if budget is None or budget.metric != metric else (
            budget.total if period == "total" else budget.daily)
        if amount is None:
            return None
        even = campaign.pacing == "even"
        if period == "total":  # with a daily budget, the daily pacing spreads the total
            return budget.in_units(amount), "flight" if even and budget.daily is None else None
        return budget.in_units(amount), "day" if even else None

    def _bound(self, campaign: Campaign, cap: Decimal, line: str | None, unit: int, moment: Moment,
               whole: int | None) -> tuple[int, float]:
        """``_paced``'s limit now, and when the line reaches the share where it moves next
        (Unix seconds; inf: not today). ``whole``: ``cap`` as an int, when ``_whole`` allows it."""
        if line is None:
            return _paced(cap, 1.0, unit, whole), math.inf
        if line == "day":  # the common line, read from today's plan once
            plan = self._day_plan(campaign, moment.date)
            limit = _paced(cap, plan.share(moment.seconds), unit, whole)
        else:
            limit = _paced(cap, self.flight_share(campaign, moment), unit, whole)
        if whole is None:
            if limit >= int(cap):
                return limit, math.inf
            share = float((limit - unit + 1) / cap)
        elif limit >= whole:
            return limit, math.inf
        else:
            share = (limit - unit + 1) / whole
        if line == "day":
            total = plan.total
            return limit, plan.reaches(share * total) if total > 0 else math.inf
        return limit, self._flight_reaches(campaign, moment, share)


def bounded(campaign: Campaign) -> bool:
    """Whether any limit applies: a campaign without one serves without reading counters."""
    return campaign.frequency_cap is not None or campaign.budget is not None


def spend_micros(campaign: Campaign, event: str) -> int:
    """What one billable ``event`` adds to the campaign's spend, in micro-units: what reports bill."""
    return _costs(campaign, event).get("spend", 0)


def _costs(campaign: Campaign, event: str) -> dict[str, int]:
    """What one event adds to each metric: 1 to its own count, and its price in micro-units to spend."""
    metric = "impressions" if event == "impression" else "clicks"
    costs = {metric: 1}
    if (campaign.price.model == "cpm") == (event == "impression"):
        costs["spend"] = int(campaign.price.charge_micros())
    return costs


def _flight_left(campaign: Campaign, moment: Moment) -> int:
    """Seconds a flight-long counter lives: the flight, a week more for late events, two days at least."""
    return max(int((campaign.flight.end - moment.now).total_seconds()) + 7 * 86400, _DAY_TTL)



def _total_key(campaign: Campaign, metric: str) -> str:
    return f"c{campaign.id}:total:{metric}"


def _day_key(campaign: Campaign, metric: str, moment: Moment) -> str:
    return f"c{campaign.id}:day:{moment.day}:{metric}"


def reader_keys(user: str) -> tuple[str, Callable[[str], bool]]:
    """A glob over every state key that names the reader, and the exact test of a key (the glob
    alone could match a longer id): frequency caps count per reader, and Thompson allocation
    remembers a reader's variant (``ab:r:<creative>:<reader>``)."""
    return f"*:{user}*", lambda key: (found := _READER_KEY.fullmatch(key)) is not None and user in found.groups()


_READER_KEY = re.compile(r"c\d+:cap:(.*):[^:]*|ab:r:[^:]*:(.*)")  # a cap's bucket, a creative id: no colons


def _paced(cap: Decimal, share: float, unit: int, whole: int | None = None) -> int:
    """A budget's ``limit`` for charges of ``unit``: the counter may charge while it is at most
    ``cap x share`` and the charge still fits under the cap.

    Integer counters make this exact: at most ``cap`` is ever charged (CPC 3 on a total of 10
    serves 3 clicks, 9.00), and pacing lets the counter run at most one unit ahead of its line.
    ``whole`` (``_whole(cap)``): the same floor in integers, several times faster than Decimal.
    """
    if whole is None:
        return min(math.floor(cap * Decimal(share)), int(cap) - unit) + unit
    numerator, denominator = share.as_integer_ratio()
    return min(whole * numerator // denominator, whole - unit) + unit


EXACT_CAP = 10**10  # below this, integer arithmetic gives what 28-digit Decimals give (``_whole``)


def _whole(cap: Decimal) -> int | None:
    """``cap`` as an int when ``_paced`` and ``_bound`` may use integers for it: whole and under
    ``EXACT_CAP``. Decimal rounds ``cap x share`` to 28 digits before the floor, and ``(limit + 1)
    / cap`` before the float; for a whole cap under 10**10 neither rounding can cross an integer
    or a float's rounding edge (a float share's nearest such miss is ~1e-16 of it, the rounding
    at most ~1e-27 of it times the cap), so the exact integer results are the same.
    """
    whole = int(cap)
    return whole if whole == cap and 0 <= whole < EXACT_CAP else None


def _plan(hours, hourly: tuple[float, ...], targeting: CompiledTargeting, weekday: int,
          start: float, end: float) -> _Plan:
    """The stretches of [start, end) inside the dayparts, hour by hour, weighted by traffic."""
    stretches = []  # (start, end, weight)
    for hour_start, hour, minute in hours:
        first_minute = hour * 60 + minute
        for first, last in targeting.daypart_windows(weekday, first_minute, first_minute + 60):
            a = max(start, hour_start + (first - first_minute) * 60)
            b = min(end, hour_start + (last - first_minute) * 60)
            if b > a:
                stretches.append((a, b, hourly[hour] * (b - a) / 3600))
    weights = tuple(w for _a, _b, w in stretches)
    before = tuple(itertools.accumulate(weights[:-1], initial=0.0)) if weights else ()
    return _Plan(tuple(a for a, _b, _w in stretches), tuple(b for _a, b, _w in stretches), before, weights,
                 before[-1] + weights[-1] if weights else 0.0)


def _hourly_weights(traffic: Mapping[int, float], tz: ZoneInfo) -> tuple[float, ...]:
    """Average page views in each local hour of the day, from counts per Unix hour.

    Uniform until the log covers a whole day; each local hour is averaged over the days it was
    observable, so a log of three and a half days does not favour the hours it saw four times.
    """
    if not traffic or max(traffic) - min(traffic) < 23:
        return (1.0,) * 24
    seen, observed = [0.0] * 24, [0] * 24
    for unix_hour in range(min(traffic), max(traffic) + 1):
        hour = dt.datetime.fromtimestamp(unix_hour * 3600, tz).hour
        seen[hour] += traffic.get(unix_hour, 0)
        observed[hour] += 1
    averages = [s / n if n else 0.0 for s, n in zip(seen, observed)]
    floor = TRAFFIC_FLOOR * sum(averages) / 24
    return tuple(max(a, floor) for a in averages)
