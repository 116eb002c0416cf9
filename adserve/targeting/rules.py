"""Targeting rules compiled once per config, and their plain evaluation against one context.

Every rule that is set must match. A rule the request cannot answer (no section, no device, no
URL...) fails closed: the campaign is excluded, never admitted by default. Serving asks the index
(``index.py``) instead of evaluating every campaign; ``matches`` here is the definition the index
must agree with, and what its tests compare it to.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from ..model import Targeting

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PLATFORM_DEVICES = {"WEB": {"desktop", "tablet"}, "MWEB": {"mobile"}, "APP": {"app"}}


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Context(NamedTuple):
    """Everything targeting reads of one slot on one page: not the reader, not the time.

    A tuple, so it is also the key under which a context's outcome is kept.
    """
    sizes: tuple[str, ...]
    placement: str | None
    section: str | None
    keywords: frozenset[str] | None  # None: unknown, so keyword rules fail closed
    url: str | None
    device: str | None
    country: str | None


@dataclass(frozen=True)
class CompiledTargeting:
    sections: frozenset[str]
    include: frozenset[str]
    exclude: frozenset[str]
    devices: frozenset[str]
    countries: frozenset[str]
    dayparts: tuple[tuple[frozenset[int], int, int], ...]  # weekdays, start and end minute
    url_pattern: re.Pattern | None
    urls: tuple[str, ...]  # the glob patterns ``url_pattern`` is compiled from
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
            urls=tuple(t.url_patterns),
            placements=frozenset(t.placements))

    def matches(self, context: Context, local: dt.datetime) -> bool:
        """Whether every rule set admits the context at local time ``local`` (sizes aside: they
        are the creatives', not the targeting's)."""
        return (_allowed(self.sections, context.section)
                and self._keywords_match(context.keywords)
                and _allowed(self.devices, context.device)
                and _allowed(self.countries, context.country)
                and _allowed(self.placements, context.placement)
                and self.url_matches(context.url)
                and self.in_daypart(local))

    def _keywords_match(self, keywords: frozenset[str] | None) -> bool:
        if not (self.include or self.exclude):
            return True
        return (keywords is not None and (not self.include or not self.include.isdisjoint(keywords))
                and self.exclude.isdisjoint(keywords))

    def url_matches(self, url: str | None) -> bool:
        return self.url_pattern is None or (url is not None and self.url_pattern.fullmatch(url) is not None)

    def daypart_change(self, local: dt.datetime) -> float:
        """When the daypart outcome may next change, in Unix seconds: a window edge, midnight, or
        a change of UTC offset (``local`` is aware, in the site timezone).

        Across DST the wall clock jumps over edges (02:00 is 03:00 on a spring-forward night) or
        meets them twice (01:30 on a fall-back night): each edge is tried at both folds, and the
        offset change itself is an edge.
        """
        if not self.dayparts:
            return math.inf
        now, day, tz = local.timestamp(), local.date(), local.tzinfo
        edges = [dt.datetime.combine(day, dt.time(m // 60, m % 60, fold=fold), tz).timestamp()
                 for _days, start, end in self.dayparts for m in (start, end) if m < 1440
                 for fold in (0, 1)]
        edges.append(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).timestamp())
        edge = min(t for t in edges if t > now)
        return min(edge, _offset_change(now, edge, tz))

    def daypart_windows(self, weekday: int, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) (minutes of a local day) that the dayparts allow on ``weekday``."""
        if not self.dayparts:
            return [(start, end)]
        windows: list[tuple[int, int]] = []
        for first, last in sorted((s, e) for days, s, e in self.dayparts if weekday in days):
            first, last = max(first, start), min(last, end)
            if windows and first <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(windows[-1][1], last))
            elif last > first:
                windows.append((first, last))
        return windows

    def in_daypart(self, local: dt.datetime) -> bool:
        if not self.dayparts:
            return True
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        return any(day in days and start <= minute < end for days, start, end in self.dayparts)


def _offset_change(start: float, end: float, tz: dt.tzinfo) -> float:
    """The first second after ``start``, up to ``end``, at another UTC offset; inf if none.

    The span is at most a day, so it holds at most one change: found by bisection.
    """
    def offset(t: float) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(t, tz).utcoffset()

    before = offset(start)
    if offset(end) == before:
        return math.inf
    low, high = math.floor(start), math.ceil(end)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if offset(middle) == before else (low, middle)
    return float(high)


def _allowed(allowed: frozenset[str], value: str | None) -> bool:
    return not allowed or (value is not None and value in allowed)


def platform_fits(platform: str, device: str | None) -> bool:
    """A creative made for one platform only serves there; unknown devices get ANY creatives only."""
    return platform == "ANY" or (device is not None and device in PLATFORM_DEVICES[platform])
