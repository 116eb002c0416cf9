"""Targeting rules compiled once per config, matched per request.

Every rule that is set must match. A rule the request cannot answer (no section, no device, no
URL...) fails closed: the campaign is excluded, never admitted by default.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import re
from dataclasses import dataclass

from .model import Targeting
from .request import Page, SlotRequest

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PLATFORM_DEVICES = {"WEB": {"desktop", "tablet"}, "MWEB": {"mobile"}, "APP": {"app"}}


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class CompiledTargeting:
    sections: frozenset[str]
    include: frozenset[str]
    exclude: frozenset[str]
    devices: frozenset[str]
    countries: frozenset[str]
    dayparts: tuple[tuple[frozenset[int], int, int], ...]  # weekdays, start and end minute
    url_pattern: re.Pattern | None
    placements: frozenset[str]

    @classmethod
    def compile(cls, t: Targeting) -> "CompiledTargeting":
        urls = "|".join(fnmatch.translate(p) for p in t.url_patterns)
        return cls(
            sections=frozenset(s.lower() for s in t.sections),
            include=frozenset(k.lower() for k in t.keywords.include),
            exclude=frozenset(k.lower() for k in t.keywords.exclude),
            devices=frozenset(t.devices),
            countries=frozenset(t.countries),
            dayparts=tuple((frozenset(WEEKDAYS.index(d) for d in p.days), _minutes(p.start),
                            _minutes(p.end)) for p in t.dayparts),
            url_pattern=re.compile(urls) if urls else None,
            placements=frozenset(t.placements))

    def matches(self, request: SlotRequest, placement: str | None, local: dt.datetime) -> bool:
        return (self._page_matches(request.page)
                and _allowed(self.devices, request.device)
                and _allowed(self.countries, request.country)
                and _allowed(self.placements, placement)
                and self._in_daypart(local))

    def _page_matches(self, page: Page) -> bool:
        if not _allowed(self.sections, page.section):
            return False
        if self.include or self.exclude:
            if page.keywords is None:
                return False
            if self.include and not self.include & page.keywords:
                return False
            if self.exclude & page.keywords:
                return False
        if self.url_pattern is not None:
            return page.url is not None and self.url_pattern.fullmatch(page.url) is not None
        return True

    def daypart_change(self, local: dt.datetime) -> float:
        """When the daypart outcome may next change, in Unix seconds: a window edge, or midnight.

        ``local`` is aware (site timezone), so the edge is right across DST changes too.
        """
        if not self.dayparts:
            return math.inf
        minute = local.hour * 60 + local.minute
        edges = [m for _days, start, end in self.dayparts for m in (start, end) if minute < m < 1440]
        day = local.date() if edges else local.date() + dt.timedelta(days=1)
        edge = min(edges, default=0)
        return dt.datetime.combine(day, dt.time(edge // 60, edge % 60), local.tzinfo).timestamp()

    def _in_daypart(self, local: dt.datetime) -> bool:
        if not self.dayparts:
            return True
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        return any(day in days and start <= minute < end for days, start, end in self.dayparts)


def _allowed(allowed: frozenset[str], value: str | None) -> bool:
    return not allowed or (value is not None and value in allowed)


def platform_fits(platform: str, device: str | None) -> bool:
    """A creative made for one platform only serves there; unknown devices get ANY creatives only."""
    return platform == "ANY" or (device is not None and device in PLATFORM_DEVICES[platform])
