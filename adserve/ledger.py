"""Budgets, pacing and frequency caps: which counters a campaign has, and what they allow.

Counters live in a ``StateStore`` under keys made here, so the decision code and the tracking
endpoints agree on them. Days are days in the site timezone, DST included: a spring-forward day
has 23 hours, and even pacing spreads the daily budget over exactly those hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo

from .model import Campaign

PACING_SLACK = dt.timedelta(hours=1)  # even pacing may run this far ahead of a straight line
_PERIOD_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
_DAY_TTL = 2 * 86400


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
    day_share: float          # share of the local day allowed so far by even pacing


EVENTS = ("impression", "click")


@dataclass(frozen=True, slots=True)
class Limit:
    """One counter an event moves: allowed iff ``value + cost <= limit`` (None: counted only).

    ``event`` says what consumes it. Impression-metered counters (caps, impression budgets,
    CPM spend, their pacing) are reserved when a decision picks the campaign and confirmed by
    the pixel; click-metered ones (click budgets, CPC spend) are checked at the decision and
    charged by the click.
    """
    key: str
    limit: float | None
    cost: float
    event: str  # "impression" or "click"
    ttl: int    # seconds a counter created now lives


class Ledger:
    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self._last: Moment | None = None
        self._known: dict[int, tuple[Moment, tuple[Limit, ...]]] = {}  # campaign id -> its counters

    def moment(self, now: dt.datetime) -> Moment:
        """The calendar facts of ``now``, computed once per second (counters need no finer)."""
        last = self._last
        if last is not None and int(last.now.timestamp()) == int(now.timestamp()):
            return last
        local = now.astimezone(self.tz)
        start, end = self.day_bounds(now)
        self._last = Moment(now=now, local=local, day=local.date().isoformat(),
                            buckets={"hour": local.strftime("%Y%m%d%H"), "day": local.strftime("%Y%m%d"),
                                     "week": "%d-W%02d" % local.isocalendar()[:2], "flight": "all"},
                            day_share=_share(now + PACING_SLACK - start, end - start))
        return self._last

    def day_bounds(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Local midnight to next local midnight, in UTC (23 or 25 hours on DST days)."""
        day = now.astimezone(self.tz).date()
        start = dt.datetime.combine(day, dt.time(), self.tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz)
        return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)

    # -- limits -------------------------------------------------------------------------------
    def limits(self, campaign: Campaign, user: str | None, moment: Moment) -> tuple[Limit, ...] | None:
        """Every counter this campaign's impressions and clicks move, with the bound of each.

        None when the campaign may not serve this reader at all: a cap that cannot be checked
        (no reader id, or no consent to use it) fails closed unless the campaign says
        ``without_consent: serve``. Counters without a bound are still counted, so a budget
        added by a reload starts from what was already delivered.
        """
        cap = campaign.frequency_cap
        if cap is None:
            return self._counters(campaign, moment)
        if user is None:
            return None if cap.without_consent == "skip" else self._counters(campaign, moment)
        ttl = _PERIOD_SECONDS.get(cap.period) or _flight_left(campaign, moment)
        return self._counters(campaign, moment) + (
            Limit(_cap_key(campaign, user, moment), cap.count, 1.0, "impression", ttl + 3600),)

    def _counters(self, campaign: Campaign, moment: Moment) -> tuple[Limit, ...]:
        """The reader-independent counters, worked out once per campaign and second."""
        known = self._known.get(campaign.id)
        if known is not None and known[0] is moment:
            return known[1]
        flight_left = _flight_left(campaign, moment)
        counters = []
        for event in EVENTS:
            for metric, cost in _costs(campaign, event).items():
                counters.append(Limit(_total_key(campaign, metric), self._total_limit(campaign, metric, moment),
                                      cost, event, flight_left))
                counters.append(Limit(_day_key(campaign, metric, moment), _daily_limit(campaign, metric, moment),
                                      cost, event, _DAY_TTL))
        self._known[campaign.id] = (moment, tuple(counters))
        return self._known[campaign.id][1]

    def charge(self, campaign: Campaign, event: str, user: str | None,
               moment: Moment) -> tuple[Limit, ...] | None:
        """The counters one ``impression`` or ``click`` of this campaign moves, with their bounds."""
        limits = self.limits(campaign, user, moment)
        return None if limits is None else tuple(limit for limit in limits if limit.event == event)

    def _total_limit(self, campaign: Campaign, metric: str, moment: Moment) -> float | None:
        budget = campaign.budget
        if budget is None or budget.metric != metric or budget.total is None:
            return None
        total = budget.total
        if campaign.pacing == "asap" or budget.daily is not None:
            return total  # with a daily budget, the daily pacing spreads the total
        flight = campaign.flight
        return total * _share(moment.now + PACING_SLACK - flight.start, flight.end - flight.start)


def bounded(campaign: Campaign) -> bool:
    """Whether any limit applies: a campaign without one serves without reading counters."""
    return campaign.frequency_cap is not None or campaign.budget is not None


def fits(value: float, cost: float, limit: float | None) -> bool:
    """Whether one more event of ``cost`` keeps a counter at ``value`` within ``limit``.

    The state stores apply the same rule (the Redis one in Lua); the tolerance absorbs the
    rounding of float amounts such as a CPM price / 1000.
    """
    return limit is None or value + cost <= limit + 1e-9


def _costs(campaign: Campaign, event: str) -> dict[str, float]:
    """What one event adds to each metric: 1 to its own count, and its price to spend."""
    if event == "impression":
        costs = {"impressions": 1.0}
        if campaign.price.model == "cpm":
            costs["spend"] = campaign.price.amount / 1000.0
    else:
        costs = {"clicks": 1.0}
        if campaign.price.model == "cpc":
            costs["spend"] = campaign.price.amount
    return costs


def _flight_left(campaign: Campaign, moment: Moment) -> int:
    """Seconds a flight-long counter lives: the flight, a week more for late events, two days at least."""
    return max(int((campaign.flight.end - moment.now).total_seconds()) + 7 * 86400, _DAY_TTL)


def _daily_limit(campaign: Campaign, metric: str, moment: Moment) -> float | None:
    budget = campaign.budget
    if budget is None or budget.metric != metric or budget.daily is None:
        return None
    return budget.daily * (1.0 if campaign.pacing == "asap" else moment.day_share)


def _total_key(campaign: Campaign, metric: str) -> str:
    return f"c{campaign.id}:total:{metric}"


def _day_key(campaign: Campaign, metric: str, moment: Moment) -> str:
    return f"c{campaign.id}:day:{moment.day}:{metric}"


def _cap_key(campaign: Campaign, user: str, moment: Moment) -> str:
    return f"c{campaign.id}:cap:{user}:{moment.buckets[campaign.frequency_cap.period]}"


def reader_keys(user: str) -> tuple[str, Callable[[str], bool]]:
    """A glob over every counter key that names the reader, and the exact test of a key (the
    glob alone could match a longer id): only frequency caps count per reader."""
    return f"c*:cap:{user}:*", lambda key: key.split(":cap:", 1)[-1].rpartition(":")[0] == user


def _share(elapsed: dt.timedelta, whole: dt.timedelta) -> float:
    return min(1.0, max(0.0, elapsed / whole))
