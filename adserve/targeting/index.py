"""Which entries of a book a page context matches, in a few C-level passes over bitsets.

An inverted index over conjunctions of attribute predicates, after Whang et al., "Indexing Boolean
Expressions" (VLDB 2009), made exact for the rule language of ``rules.py``, with each posting list
held as a bitset over the entries' positions (a Python ``int``):

- Per attribute, the entries that leave it unset and, per value, the entries whose rule admits
  it. A context's entries pass an attribute if they leave it unset or admit one of its values
  (``unruled | postings[v1] | ...``); the matches are the AND of that over the attributes (sizes
  included), less the entries that exclude one of the page's keywords.
- Why bitsets: gathering candidates from lists and checking each one's leftover rules in Python
  costs ~1 µs per gathered entry, and a big book gathers many per context. An AND or OR of two
  10,000-entry bitsets is one C loop over 157 machine words (~0.1-0.3 µs), so a context costs a
  few dozen such operations, nearly flat in the book; Python then touches only the matches.
- The book is split by the one-valued attribute that cuts it smallest (``_split``), and a
  context is matched in its value's part: its bitsets span ~800 entries of a 10,000 book aimed
  at 16 sections, so their operations and the unpacking of the result stay nearly flat.
- URL globs are filed under their literal prefix (up to the first ``*``, ``?`` or ``[``), looked
  up by the context URL's prefixes. An entry whose globs are each such a prefix and one trailing
  ``*`` is decided by that; any other is then checked with its regex, among the matches only,
  and once per context for all the entries with the same globs.
- Flights and dayparts are never checked per context: ``Activations`` keeps which entries are
  live, which changes only at an entry's edge.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .rules import CompiledTargeting, Context

# the attributes a context has one value of, and the context's field that holds it
SINGLES = {"sections": "section", "devices": "device", "countries": "country", "placements": "placement"}


@dataclass(frozen=True)
class Entry:
    """One thing to index: its rules, the sizes it can fill and its flight (Unix seconds)."""
    rules: CompiledTargeting
    sizes: frozenset[str]
    flight: tuple[float, float]


class TargetingIndex:
    """The book split by the one-valued attribute that cuts it smallest (sections, in a book of
    many small orders): a context is matched in its value's part only, whose bitsets span that
    part's entries, not the book's. An AND over 800 entries is a few machine words; over 10,000
    it is 157, and an attribute costs a few such operations per value a context offers."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        rules = [entry.rules for entry in entries]
        self._activations = Activations([entry.flight for entry in entries], rules)
        everyone = range(len(entries))
        self._split, parts = _split(rules)
        self._parts = {value: _Part(entries, members) for value, members in parts.items()}
        self._rest = _Part(entries, [i for i in everyone if not getattr(rules[i], self._split)]
                           if self._split else everyone)  # a context with no value filed

    def matches(self, context: Context, now: float, local: dt.datetime) -> tuple[np.ndarray, float]:
        """The entries (an array of positions, ascending) that match ``context`` at ``now``, and
        until when that answer holds: the next edge of an entry that matches it but for the time.

        ``local`` is ``now`` in the site timezone, for dayparts.
        """
        activations = self._activations
        activations.advance(now, local)
        part = self._parts.get(getattr(context, SINGLES[self._split]), self._rest) if self._split else self._rest
        positions = part.matches(context)
        until = float(activations.edges[positions].min()) if len(positions) else math.inf
        return positions[activations.live[positions]], until


def _split(rules: list[CompiledTargeting]) -> tuple[str | None, dict[str, list[int]]]:
    """The one-valued attribute whose biggest part is smallest, and each of its values' entries
    (those admitting it or leaving the attribute unset); none when no part would be under half
    the book."""
    best, parts = None, {}
    for attribute in SINGLES:
        unruled = [i for i, r in enumerate(rules) if not getattr(r, attribute)]
        filed: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rules):
            for value in getattr(r, attribute):
                filed[value].append(i)
        biggest = len(unruled) + max(map(len, filed.values()), default=0)
        if biggest <= len(rules) // 2 and (best is None or biggest < best[0]):
            best = biggest, attribute, {v: sorted(members + unruled) for v, members in filed.items()}
    return (best[1], best[2]) if best else (None, {})


class _Part:
    """Bitsets over some entries (the part of the book one value of the split attribute admits)."""

    def __init__(self, entries: Sequence[Entry], members: Sequence[int]) -> None:
        self._members = np.array(members, dtype=np.intp)  # part position -> book position
        self._bytes = (len(members) + 7) // 8
        self._everyone = everyone = (1 << len(members)) - 1
        # attribute ("include" for keywords, "url" for glob prefixes, "sizes") -> value -> entries admitting it
        self._postings: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        ruled: dict[str, int] = defaultdict(int)  # attribute -> entries with a rule on it
        self._excluded: dict[str, int] = defaultdict(int)  # keyword -> entries excluding it
        keyworded = url_checked = 0  # entries that need the page's keywords / their URL regex run
        checked_by: dict[int, re.Pattern] = {}  # position -> URL regex, of the entries that need it run
        globbed: dict[str, int] = defaultdict(int)  # URL regex (its text) -> the entries it decides
        for i, entry in enumerate(map(entries.__getitem__, members)):
            bit, r = 1 << i, entry.rules
            values = {"include": r.include, "sizes": entry.sizes, "url": frozenset(map(_prefix, r.urls)),
                      **{a: getattr(r, a) for a in SINGLES}}
            if not all(glob.endswith("*") and _prefix(glob) == glob[:-1] for glob in r.urls):
                url_checked |= bit  # its prefixes are necessary, not enough: its regex decides
                checked_by[i] = r.url_pattern
                globbed[r.url_pattern.pattern] |= bit
            for attribute, allowed in values.items():
                if allowed:
                    ruled[attribute] |= bit
                    for value in allowed:
                        self._postings[attribute][value] |= bit
            for keyword in r.exclude:
                self._excluded[keyword] |= bit
            if r.include or r.exclude:
                keyworded |= bit
        # per attribute some entry rules on, the context's field that holds its value(s), the
        # entries that leave it unset and the entries per value; sizes always, and none leaves
        # them unset: an entry with no size (its creatives all of weight 0) fills no slot
        unruled = {a: everyone & ~ruled[a] for a in ("include", "url", *SINGLES)}
        unruled["sizes"] = 0
        self._singles = [(field, unruled[a], self._postings[a]) for a, field in SINGLES.items() if ruled[a]]
        self._manies = [(a, unruled[a], self._postings[a]) for a in ("sizes", "include", "url")
                        if ruled[a] or a == "sizes"]
        self._unkeyworded = everyone & ~keyworded
        self._url_checked = url_checked
        # position -> its URL regex and every entry with the same one: a context runs each once
        self._patterns = {i: (pattern, globbed[pattern.pattern]) for i, pattern in checked_by.items()}
        # a context's URL is looked up by its prefixes of the lengths filed
        self._url_lengths = sorted({len(prefix) for prefix in self._postings["url"]})

    def matches(self, context: Context) -> np.ndarray:
        """The book positions (ascending) of this part's entries that match ``context`` but for the time."""
        keywords, url = context.keywords, context.url
        found = self._everyone
        for field, passing, filed in self._singles:
            found &= passing | filed.get(getattr(context, field), 0)
        offered = {"sizes": context.sizes, "include": keywords or (),
                   "url": [url[:n] for n in self._url_lengths if n <= len(url)] if url is not None else ()}
        for attribute, passing, filed in self._manies:
            for value in offered[attribute]:
                passing |= filed.get(value, 0)
            found &= passing
        if keywords is None:
            found &= self._unkeyworded
        else:
            excluded = self._excluded
            for keyword in keywords:
                found ^= found & excluded.get(keyword, 0)  # (found & ~excluded, without a negative int)
        checked = found & self._url_checked
        while checked:  # the few left whose globs a prefix does not decide, one regex at a time
            pattern, sharing = self._patterns[(checked & -checked).bit_length() - 1]
            checked ^= checked & sharing
            if pattern.fullmatch(url) is None:
                found ^= found & sharing
        return self._members[_positions(found, self._bytes)]


def _positions(bits: int, size: int) -> np.ndarray:
    """The positions of the set bits of ``bits`` (``size`` bytes long), ascending."""
    return np.unpackbits(np.frombuffer(bits.to_bytes(size, "little"), np.uint8),
                         bitorder="little").view(bool).nonzero()[0]


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
        self.live = np.zeros(len(flights), bool)
        self.edges = np.full(len(flights), math.inf)  # per entry: its next edge after the last advance
        self._due: list[tuple[float, int]] = []  # heap of (edge, entry)
        self._now = math.inf  # when last advanced (inf: never)

    def advance(self, now: float, local: dt.datetime) -> None:
        if now < self._now:
            self._due = []
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
            self.live[i] = inside and start <= now < end
            self.edges[i] = edge = min(change, start if start > now else end if end > now else math.inf)
            if edge < math.inf:
                heapq.heappush(self._due, (edge, i))
