"""Which entries of a book a page context matches, in time that grows with the matches, not the book.

An inverted index over conjunctions of attribute predicates, after Whang et al., "Indexing Boolean
Expressions" (VLDB 2009), made exact for the rule language of ``rules.py``:

- Each entry is filed, under each of its sizes, in the posting lists of its most selective rule,
  or of the pair of its two most selective rules (a section and a keyword: the conjunction's own
  key), never of the others; an entry without rules in an "any" list. A context gathers the lists
  of its own values: the entries that pass their most selective rules, a small superset of the
  matches.
- Every other rule is then applied to each entry of that superset, from a small record made at
  build time (the rules its filing did not decide): the work grows with the gathered entries and
  never reads a structure the size of the book, so it stays in the CPU's caches.
- URL globs are filed under their literal prefix (up to the first ``*``, ``?`` or ``[``). A glob
  that is such a prefix and one trailing ``*`` is decided by the prefix; any other glob is
  checked with its regex.
- Flights and dayparts are never checked per context: ``Activations`` keeps the set of live
  entries, which changes only at an entry's edge.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from .rules import CompiledTargeting, Context



PAIR_KEYS = 16  # most keys an entry is filed under per size, when filed by a pair of rules


@dataclass(frozen=True)
class Entry:
    """One thing to index: its rules, the sizes it can fill and its flight (Unix seconds)."""
    rules: CompiledTargeting
    sizes: frozenset[str]
    flight: tuple[float, float]


class TargetingIndex:
    def __init__(self, entries: Sequence[Entry]) -> None:
        rules = [entry.rules for entry in entries]
        self._activations = Activations([entry.flight for entry in entries], rules)
        ruled_values = [_rule_values(r) for r in rules]
        known: dict[str, set] = defaultdict(set)  # attribute -> every value some entry admits
        for values in ruled_values:
            for attribute, allowed in values.items():
                known[attribute] |= allowed
        # the attributes of the entries' most selective rules (one or two) -> (size, *values) -> entries
        self._primary: dict[tuple[str, ...], dict[tuple, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._residues: list[_Residue | None] = []  # per entry: the rules its filing leaves to check
        urls = sorted(known.get("url", ()))
        for i, (entry, values) in enumerate(zip(entries, ruled_values)):
            attributes = _most_selective(values, known, urls)
            for size in entry.sizes:
                for combination in itertools.product(*(values[a] for a in attributes)):
                    self._primary[attributes][(size, *combination)].add(i)
            self._residues.append(_Residue.left(entry.rules, attributes))
        # a context's URL is looked up by its prefixes of the lengths filed (other globs are residues)
        self._url_lengths = sorted({len(prefix) for (_size, prefix) in self._primary.get(("url",), ())})

    def matches(self, context: Context, now: float, local: dt.datetime) -> tuple[list[int], float]:
        """The entries (by position, ascending) that match ``context`` at ``now``, and until when
        that answer holds: the next edge of an entry that matches it but for the time.

        ``local`` is ``now`` in the site timezone, for dayparts.
        """
        activations = self._activations
        activations.advance(now, local)
        values = self._context_values(context)
        gathered = set().union(*(filed.get((size, *combination), ()) for attributes, filed in self._primary.items()
                                 for combination in itertools.product(*(values[a] for a in attributes))
                                 for size in context.sizes))
        singles = (context.section, context.device, context.country, context.placement)
        residues, live, edges = self._residues, activations.live, activations.edges
        matched, until = [], math.inf
        for i in gathered:
            residue = residues[i]
            if residue is None or residue.admits(singles, context.keywords, context.url):
                if edges[i] < until:
                    until = edges[i]
                if i in live:
                    matched.append(i)
        matched.sort()
        return matched, until

    def _context_values(self, context: Context) -> dict[str, Sequence]:
        """The values a context offers each attribute (a URL offers its prefixes of indexed lengths)."""
        url = context.url
        return {"sections": (context.section,), "keywords": tuple(context.keywords or ()),
                "devices": (context.device,),
                "countries": (context.country,), "placements": (context.placement,),
                "url": [url[:n] for n in self._url_lengths if n <= len(url)] if url is not None else ()}


def _most_selective(values: dict[str, frozenset], known: dict[str, set], urls: list[str]) -> tuple[str, ...]:
    """The attributes whose rules let the smallest share of their known values through: the
    best two together (a section and a keyword pass together far less often than either),
    unless their values multiply past a few keys; none for an entry without rules.

    A URL rule comes only alone, when its prefixes are rarer than the best other rule's values:
    a prefix counts as the share of known prefixes that start with it, so an article's
    (``https://news.example/politics/a12``) is rare and the whole site's (``https://news.example/``) is not.
    """
    share = {a: len(values[a]) / len(known[a]) for a in values if a != "url"}
    ranked = sorted(share, key=share.__getitem__)
    if "url" in values and (not ranked or _url_share(values["url"], urls) < share[ranked[0]]):
        return ("url",)
    if len(ranked) >= 2 and len(values[ranked[0]]) * len(values[ranked[1]]) <= PAIR_KEYS:
        return tuple(sorted(ranked[:2]))
    return tuple(ranked[:1])


def _url_share(prefixes: frozenset[str], urls: list[str]) -> float:
    """The share of the known prefixes (``urls``, sorted) that start with one of ``prefixes``."""
    return sum(bisect.bisect_left(urls, prefix + "\U0010ffff") - bisect.bisect_left(urls, prefix)
               for prefix in prefixes) / len(urls)


SINGLES = ("sections", "devices", "countries", "placements")  # the attributes a context has one value of


class _Residue(NamedTuple):
    """The rules of one entry that its filing does not decide, checked on each gathered context."""
    singles: tuple[tuple[int, frozenset[str]], ...]  # (position in ``SINGLES``, values allowed)
    include: frozenset[str] | None  # one of these keywords is needed (the page must have keywords)
    exclude: frozenset[str] | None  # none of these may be there (the page must have keywords)
    prefixes: tuple[str, ...] | None  # the URL must start with one of these (globs its filing left)
    pattern: re.Pattern | None  # or match this (globs that a prefix does not decide)

    @classmethod
    def left(cls, rules: CompiledTargeting, filed: tuple[str, ...]) -> _Residue | None:
        """What is left to check of ``rules`` for an entry filed under ``filed``; None: nothing."""
        singles = tuple((n, allowed) for n, attribute in enumerate(SINGLES)
                        for allowed in (getattr(rules, attribute),) if allowed and attribute not in filed)
        include = rules.include if rules.include and "keywords" not in filed else None
        prefixes = pattern = None
        if not all(glob.endswith("*") and _prefix(glob) == glob[:-1] for glob in rules.urls):
            pattern = rules.url_pattern
        elif rules.urls and "url" not in filed:
            prefixes = tuple(glob[:-1] for glob in rules.urls)
        if not (singles or include or rules.exclude or prefixes or pattern):
            return None
        return cls(singles, include, rules.exclude or None, prefixes, pattern)

    def admits(self, singles: tuple[str | None, ...], keywords: frozenset[str] | None, url: str | None) -> bool:
        """Whether a context with these values passes the rules left (``singles`` as ``SINGLES``)."""
        for n, allowed in self.singles:
            if singles[n] not in allowed:
                return False
        if self.include is not None and (keywords is None or self.include.isdisjoint(keywords)):
            return False
        if self.exclude is not None and (keywords is None or not self.exclude.isdisjoint(keywords)):
            return False
        if self.prefixes is not None and (url is None or not url.startswith(self.prefixes)):
            return False
        return self.pattern is None or (url is not None and self.pattern.fullmatch(url) is not None)


def _rule_values(rules: CompiledTargeting) -> dict[str, frozenset]:
    """The values each set rule admits (URL globs by their literal prefix); unset rules left out."""
    values = {"sections": rules.sections, "keywords": rules.include, "devices": rules.devices,
              "countries": rules.countries, "placements": rules.placements,
              "url": frozenset(_prefix(glob) for glob in rules.urls)}
    return {attribute: allowed for attribute, allowed in values.items() if allowed}


def _prefix(glob: str) -> str:
    """The literal start of a glob: every URL it matches begins with it."""
    return glob[:min((i for i in map(glob.find, "*?[") if i >= 0), default=len(glob))]


class Activations:
    """Which entries are live (in flight, inside a daypart), and when each may next change.

    Liveness changes only at an entry's edges: its flight's start and end, and its dayparts'
    window edges, midnights and UTC-offset changes (``CompiledTargeting.daypart_change``, DST
    included). A heap holds each entry's next edge; advancing the clock looks again only at the
    entries whose edge has passed, working out each distinct set of dayparts once. A clock set
    back starts over.
    """

    def __init__(self, flights: list[tuple[float, float]], rules: list[CompiledTargeting]) -> None:
        self._flights = flights
        self._rules = rules
        self.live: set[int] = set()
        self.edges = [math.inf] * len(flights)  # per entry: its next edge after the last advance
        self._due: list[tuple[float, int]] = []  # heap of (edge, entry)
        self._now = math.inf  # when last advanced (inf: never)

    def advance(self, now: float, local: dt.datetime) -> None:
        if now < self._now:
            self._due, self.live = [], set()
            due: Iterable[int] = range(len(self._flights))
        else:
            due = []
            while self._due and self._due[0][0] <= now:
                due.append(heapq.heappop(self._due)[1])
        self._now = now
        dayparts: dict[tuple, tuple[bool, float]] = {}
        for i in due:
            rules = self._rules[i]
            if rules.dayparts not in dayparts:
                dayparts[rules.dayparts] = (rules.in_daypart(local), rules.daypart_change(local))
            inside, change = dayparts[rules.dayparts]
            start, end = self._flights[i]
            if inside and start <= now < end:
                self.live.add(i)
            else:
                self.live.discard(i)
            self.edges[i] = edge = min(change, start if start > now else end if end > now else math.inf)
            if edge < math.inf:
                heapq.heappush(self._due, (edge, i))
