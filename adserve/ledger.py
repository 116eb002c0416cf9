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


class Ledger:
    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self._last: Moment | None = None

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
    def limits(self, campaign: Campaign, user: str | None,
               moment: Moment) -> list[tuple[str, float]] | None:
        """The counters that bound this campaign now, each with the value it must stay under.

        None when the campaign may not serve this reader at all: a cap that cannot be checked
        (no reader id, or no consent to use it) fails closed unless the campaign says
        ``without_consent: serve``. Keys and limits come together so a decision builds each
        key once.
        """
        limits = []
        cap = campaign.frequency_cap
        if cap is not None:
            if user is not None:
                limits.append((_cap_key(campaign, user, moment), cap.count))
            elif cap.without_consent == "skip":
                return None
        budget = campaign.budget
        if budget is not None and budget.total is not None:
            limits.append((_total_key(campaign, budget.metric), self._paced_total(campaign, moment.now)))
        if budget is not None and budget.daily is not None:
            paced = budget.daily * (1.0 if campaign.pacing == "asap" else moment.day_share)
            limits.append((_day_key(campaign, budget.metric, moment), paced))
        return limits

    def _paced_total(self, campaign: Campaign, now: dt.datetime) -> float:
        total = campaign.budget.total
        if campaign.pacing == "asap" or campaign.budget.daily is not None:
            return total  # with a daily budget, the daily pacing spreads the total
        flight = campaign.flight
        return total * _share(now + PACING_SLACK - flight.start, flight.end - flight.start)

    # -- charging -----------------------------------------------------------------------------
    def charge(self, campaign: Campaign, event: str, user: str | None,
               moment: Moment) -> tuple[dict[str, float], dict[str, int]]:
        """Increments (and their TTLs) for one counted ``impression`` or ``click``."""
        metric = "impressions" if event == "impression" else "clicks"
        amounts = {metric: 1.0}
        if (campaign.price.model == "cpm") == (event == "impression"):
            amounts["spend"] = campaign.price.amount / (1000.0 if event == "impression" else 1.0)
        increments: dict[str, float] = {}
        ttl: dict[str, int] = {}
        flight_left = max(int((campaign.flight.end - moment.now).total_seconds()) + 7 * 86400, _DAY_TTL)
        for name, amount in amounts.items():
            total, day = _total_key(campaign, name), _day_key(campaign, name, moment)
            increments[total], ttl[total] = amount, flight_left
            increments[day], ttl[day] = amount, _DAY_TTL
        cap = campaign.frequency_cap
        if event == "impression" and cap is not None and user is not None:
            key = _cap_key(campaign, user, moment)
            increments[key] = 1.0
            ttl[key] = _PERIOD_SECONDS.get(cap.period, flight_left) + 3600
        return increments, ttl


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
