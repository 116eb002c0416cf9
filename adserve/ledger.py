"""Budgets, pacing and frequency caps: which counters a campaign has, and what they allow.

Counters live in a ``StateStore`` under keys made here, so the decision code and the tracking
endpoints agree on them. Days are days in the site timezone, DST included: a spring-forward day
has 23 hours, and even pacing spreads the daily budget over exactly those hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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

    # -- keys ---------------------------------------------------------------------------------
    def keys(self, campaign: Campaign, user: str | None, moment: Moment) -> list[str]:
        """The counters ``allows`` reads for this campaign, reader and moment."""
        keys = []
        if campaign.budget is not None:
            metric = campaign.budget.metric
            keys += [_total_key(campaign, metric), _day_key(campaign, metric, moment)]
        if campaign.frequency_cap is not None and user is not None:
            keys.append(_cap_key(campaign, user, moment))
        return keys

    # -- rules --------------------------------------------------------------------------------
    def allows(self, campaign: Campaign, values: dict[str, float], user: str | None,
               moment: Moment) -> bool:
        cap = campaign.frequency_cap
        if cap is not None:
            if user is None:
                return False  # a cap that cannot be checked fails closed
            if values.get(_cap_key(campaign, user, moment), 0.0) >= cap.count:
                return False
        budget = campaign.budget
        if budget is None:
            return True
        if budget.total is not None:
            spent = values.get(_total_key(campaign, budget.metric), 0.0)
            if spent >= self._paced_total(campaign, moment.now):
                return False
        if budget.daily is not None:
            spent = values.get(_day_key(campaign, budget.metric, moment), 0.0)
            paced = budget.daily * (1.0 if campaign.pacing == "asap" else moment.day_share)
            if spent >= paced:
                return False
        return True

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


def _share(elapsed: dt.timedelta, whole: dt.timedelta) -> float:
    return min(1.0, max(0.0, elapsed / whole))
