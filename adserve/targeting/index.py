"""Which entries of a book a page context matches, in time that grows with the matches, not the book.

An inverted index over conjunctions of attribute predicates, after Whang et al., "Indexing Boolean
Expressions" (VLDB 2009), made exact for the rule language of ``rules.py``:

- Each entry is filed, under each of its sizes, in the posting lists of its most selective rule,
  or of the pair of its two most selective rules (a section and a keyword: the conjunction's own
  key), never of the others; an entry without rules in an "any" list. A context gathers the lists
  of its own values: the entries that pass their most selective rules, a small superset of the
  matches.
- Every rule is then applied to that superset with set operations (which run in C): of the
  gathered entries that set a rule, those missing from the rule's posting lists for the
  context's values drop out; excluded keywords subtract their lists.
- URL globs are filed under their literal prefix (up to the first ``*``, ``?`` or ``[``). A glob
  that is such a prefix and one trailing ``*`` is decided by the prefix; any other glob is
  checked with its regex last, on the few entries still in.
- Flights and dayparts are never checked per context: ``Activations`` keeps the set of live
  entries, which changes only at an entry's edge.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

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
        self._rules = [entry.rules for entry in entries]
        self._activations = Activations([entry.flight for entry in entries], self._rules)
        self._postings: dict[str, dict[str | None, set[int]]] = {}  # attribute -> value -> entries
        self._ruled: dict[str, set[int]] = {}  # attribute -> entries that set a rule on it
        self._excluded: dict[str, set[int]] = defaultdict(set)  # keyword -> entries excluding it
        self._keyworded: set[int] = set()  # entries with keyword rules: they need the page's keywords
        self._url_checked: set[int] = set()  # entries with a glob that its prefix does not decide
        ruled_values = [_rule_values(rules) for rules in self._rules]
        for i, (rules, values) in enumerate(zip(self._rules, ruled_values)):
            for attribute, allowed in values.items():
                self._ruled.setdefault(attribute, set()).add(i)
                for value in allowed:
                    self._postings.setdefault(attribute, defaultdict(set))[value].add(i)
            for keyword in rules.exclude:
                self._excluded[keyword].add(i)
            if rules.include or rules.exclude:
                self._keyworded.add(i)
            if not all(glob.endswith("*") and _prefix(glob) == glob[:-1] for glob in rules.urls):
                self._url_checked.add(i)
        self._url_lengths = sorted({len(prefix) for prefix in self._postings.get("url", ())})
        # the attributes of the entries' most selective rules (one or two) -> (size, *values) -> entries
        self._primary: dict[tuple[str, ...], dict[tuple, set[int]]] = defaultdict(lambda: defaultdict(set))
        for i, (entry, values) in enumerate(zip(entries, ruled_values)):
            attributes = self._most_selective(values)
            for size in entry.sizes:
                for combination in itertools.product(*(values[a] for a in attributes)):
                    self._primary[attributes][(size, *combination)].add(i)

    def _most_selective(self, values: dict[str, frozenset]) -> tuple[str, ...]:
        """The attributes whose rules let the smallest share of their known values through: the
        best two together (a section and a keyword pass together far less often than either),
        unless their values multiply past a few keys; none for an entry without rules.

        A URL rule comes only alone: its prefix may be the whole site's (``https://news.example/*/a1``).
        """
        ranked = sorted((a for a in values if a != "url"), key=lambda a: len(values[a]) / len(self._postings[a]))
        if len(ranked) >= 2 and len(values[ranked[0]]) * len(values[ranked[1]]) <= PAIR_KEYS:
            return tuple(sorted(ranked[:2]))
        return tuple(ranked[:1]) or tuple(values)

    def matches(self, context: Context, now: float, local: dt.datetime) -> tuple[list[int], float]:
        """The entries (by position, ascending) that match ``context`` at ``now``, and until when
        that answer holds: the next edge of an entry that matches it but for the time.

        ``local`` is ``now`` in the site timezone, for dayparts.
        """
        self._activations.advance(now, local)
        values = self._context_values(context)
        found = set().union(*(filed[key] for attributes, filed in self._primary.items()
                              for combination in itertools.product(*(values[a] for a in attributes))
                              for key in ((size, *combination) for size in context.sizes) if key in filed))
        for attribute, postings in self._postings.items():
            ruled = found & self._ruled[attribute]
            if ruled:
                given = values[attribute]
                if len(given) == 1:  # one value (a section, a device...): one posting list
                    passed = postings.get(given[0])
                    found -= ruled - passed if passed else ruled
                else:
                    found -= ruled.difference(*(ruled & postings[value] for value in given if value in postings))
        if context.keywords is None:
            found -= found & self._keyworded
        else:
            for keyword in context.keywords:
                if keyword in self._excluded:
                    found -= found & self._excluded[keyword]
        for i in found & self._url_checked:
            if not self._rules[i].url_matches(context.url):
                found.discard(i)
        until = min(map(self._activations.edges.__getitem__, found), default=math.inf)
        return sorted(found & self._activations.live), until

    def _context_values(self, context: Context) -> dict[str, Sequence]:
        """The values a context offers each attribute (a URL offers its prefixes of indexed lengths)."""
        url = context.url
        return {"sections": (context.section,), "keywords": tuple(context.keywords or ()),
                "devices": (context.device,),
                "countries": (context.country,), "placements": (context.placement,),
                "url": [url[:n] for n in self._url_lengths if n <= len(url)] if url is not None else ()}


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
