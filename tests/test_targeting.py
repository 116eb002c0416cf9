"""The targeting index answers exactly what a plain scan of the same rules answers, at any time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from adserve.model import Daypart, KeywordRule, Targeting
from adserve.targeting import CompiledTargeting, Context, Entry, TargetingIndex

NEW_YORK = ZoneInfo("America/New_York")
BASE = dt.datetime(2026, 3, 7, 12, 0, tzinfo=dt.timezone.utc).timestamp()  # DST starts the next night
HOUR = 3600.0
SECTIONS = ["politics", "sports", "world"]
KEYWORDS = ["senate", "budget", "crash", "ai", "court"]
COUNTRIES = ["US", "CA", "DE"]
PLACEMENTS = ["top", "side"]
SIZES = ["300x250", "728x90", "320x50"]
GLOBS = ["https://x.example/a/*", "https://x.example/a", "https://x.example/*/b", "https://x.example/a?*",
         "*", "https://x.example/[ab]/*", "https://x.example/a*b", "", "https://x.example/"]
URLS = ["https://x.example/a/b", "https://x.example/a", "https://x.example/ab", "https://x.example/b/b",
        "https://x.example/", "https://y.example/a/b", ""]


def some(values: list) -> st.SearchStrategy[list]:
    """Mostly an unset rule (so that entries often match), else one to all of ``values``."""
    return st.one_of(st.just([]), st.just([]), st.just([]),
                     st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))


clock = st.sampled_from(["00:00", "01:30", "02:00", "02:30", "03:00", "07:15", "12:00", "23:59"])
dayparts = st.lists(st.builds(Daypart, days=st.lists(st.sampled_from(["fri", "sat", "sun"]), min_size=1, unique=True),
                              start=clock, end=st.sampled_from(["01:00", "02:30", "03:00", "13:00", "24:00"])),
                    max_size=2)
targeting = st.builds(Targeting, sections=some(SECTIONS),
                      keywords=st.builds(KeywordRule, include=some(KEYWORDS), exclude=some(KEYWORDS)),
                      devices=some(["desktop", "mobile", "app"]), countries=some(COUNTRIES),
                      placements=some(PLACEMENTS), url_patterns=some(GLOBS),
                      dayparts=st.one_of(st.just([]), st.just([]), dayparts))
hours = st.integers(-30, 30).map(lambda n: BASE + n * HOUR + 0.5)  # edges mid-second: flights are exact
flight = st.tuples(hours, st.integers(1, 40)).map(lambda f: (f[0], f[0] + f[1] * HOUR))
entry = st.builds(lambda t, sizes, f: Entry(CompiledTargeting.compile(t), frozenset(sizes), f),
                  targeting, st.lists(st.sampled_from(SIZES), min_size=1, max_size=2, unique=True), flight)
context = st.builds(Context, sizes=st.lists(st.sampled_from(SIZES), min_size=1, max_size=2, unique=True).map(tuple),
                    placement=st.sampled_from([None, *PLACEMENTS]), section=st.sampled_from([None, *SECTIONS]),
                    keywords=st.one_of(st.none(), st.frozensets(st.sampled_from(KEYWORDS), max_size=3)),
                    url=st.sampled_from([None, *URLS]), device=st.sampled_from([None, "desktop", "mobile", "app"]),
                    country=st.sampled_from([None, *COUNTRIES]))
moment = st.integers(0, 48 * 60).map(lambda minutes: BASE + minutes * 60.0 + 0.25)


def scan(entries: list[Entry], c: Context, now: float) -> list[int]:
    """The plain evaluation of every rule of every entry: what the index must agree with."""
    local = dt.datetime.fromtimestamp(now, NEW_YORK)
    return [i for i, e in enumerate(entries) if e.flight[0] <= now < e.flight[1] and e.rules.matches(c, local)
            and not e.sizes.isdisjoint(c.sizes)]


def ask(index: TargetingIndex, c: Context, now: float) -> tuple[list[int], float]:
    matched, until = index.matches(c, now, dt.datetime.fromtimestamp(now, NEW_YORK))
    return matched.tolist(), until


@settings(max_examples=300, deadline=None)
@given(st.lists(entry, max_size=30), st.lists(st.tuples(context, moment), min_size=1, max_size=8))
def test_the_index_matches_a_plain_scan_and_says_until_when(entries, queries):
    """One index asked in turn (the clock going forward and back) answers as the scan does, and
    the answer still holds just before the moment it says it may change."""
    index = TargetingIndex(entries)
    for c, now in queries:
        matched, until = ask(index, c, now)
        assert matched == scan(entries, c, now)
        assert until > now
        if until < now + 3 * 86400:
            assert scan(entries, c, until - 0.5) == matched
            assert scan(entries, c, (now + until) / 2) == matched



@settings(max_examples=60, deadline=None)
@given(st.lists(entry, min_size=1, max_size=30), st.integers(3, 12), st.lists(st.tuples(context, moment), min_size=1, max_size=4))
def test_a_book_of_many_words_matches_a_plain_scan(entries, copies, queries):
    """The index keeps its lists as bitsets over the entries' positions: a book spanning several
    64-bit words and a last byte filled in part (copies of the same entries, so matches spread
    over every word, down to the first and last position) answers as the scan does."""
    book = entries * copies + entries[:1]
    index = TargetingIndex(book)
    for c, now in queries:
        assert ask(index, c, now)[0] == scan(book, c, now)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(entry, st.booleans()), min_size=1, max_size=20),
       st.lists(st.tuples(context, moment), min_size=1, max_size=4))
def test_an_entry_that_fills_no_size_never_matches(drawn, queries):
    """A campaign whose creatives all have weight 0 loads (with a warning) and is filed with no
    size to fill: it matches no context, also in a book, or a part of one, where no entry has a
    size (there the index had no size rule to apply, and admitted it)."""
    some_empty = [dataclasses.replace(e, sizes=frozenset()) if empty else e for e, empty in drawn]
    all_empty = [dataclasses.replace(e, sizes=frozenset()) for e, _ in drawn]
    for book in (some_empty, all_empty):
        index = TargetingIndex(book)
        for c, now in queries:
            assert ask(index, c, now)[0] == scan(book, c, now)


def aimed(entries: list[Entry], values: list[list[str]], attribute: str) -> list[Entry]:
    """The entries with their rule on ``attribute`` replaced by ``values`` (one list per entry)."""
    return [dataclasses.replace(e, rules=dataclasses.replace(e.rules, **{attribute: frozenset(v)}))
            for e, v in zip(entries, values)]


@settings(max_examples=100, deadline=None)
@given(st.lists(entry, min_size=1, max_size=30), st.data(),
       st.sampled_from([("sections", SECTIONS + ["opinion", "local"]), ("countries", COUNTRIES + ["FR", "GB"]),
                        ("placements", PLACEMENTS + ["foot", "inline"])]),
       st.lists(st.tuples(context, moment), min_size=1, max_size=6))
def test_a_book_split_by_one_attribute_matches_a_plain_scan(entries, data, aim, queries):
    """Most entries aimed at one value of a one-valued attribute: the index matches each context
    in its value's part of the book only (or in the part of entries that leave it unset), and
    answers as the scan does."""
    attribute, values = aim
    chosen = data.draw(st.lists(st.one_of(st.just([]), *[st.just([v]) for v in values], st.just(values[:2])),
                                min_size=len(entries), max_size=len(entries)))
    book = aimed(entries, chosen, attribute) * 3
    index = TargetingIndex(book)
    for c, now in queries:
        matched, until = ask(index, c, now)
        assert matched == scan(book, c, now)
        if until < now + 3 * 86400:
            assert scan(book, c, until - 0.5) == matched


def test_a_book_is_split_by_the_attribute_that_cuts_it_smallest():
    """Entries spread over three sections, all on two devices: sections cut the book into parts of
    a third (plus the few that leave sections unset); devices would not cut it at all."""
    book = aimed(aimed([Entry(CompiledTargeting.compile(Targeting()), frozenset(["300x250"]), (0.0, 2 * BASE))] * 40,
                       [[SECTIONS[n % 3]] if n % 10 else [] for n in range(40)], "sections"),
                 [["desktop", "mobile"]] * 40, "devices")
    index = TargetingIndex(book)
    assert index._split == "sections"
    c = Context(("300x250",), None, "sports", frozenset(), None, "mobile", None)
    assert ask(index, c, BASE)[0] == scan(book, c, BASE) != []


def test_an_empty_book_matches_nothing_ever():
    assert ask(TargetingIndex([]), Context(("300x250",), None, None, None, "https://x.example/", None, None),
               BASE) == ([], float("inf"))

def test_activations_switch_at_each_edge_through_a_dst_night():
    """Minute by minute over the spring-forward night, flights and dayparts switch on and off at
    their edges, and the index, advancing only past edges, agrees with the scan at every step."""
    rules = [Targeting(dayparts=[Daypart(start=start, end=end)])
             for start, end in [("01:30", "02:30"), ("02:30", "03:30"), ("03:00", "04:00"), ("00:00", "24:00")]]
    entries = [Entry(CompiledTargeting.compile(t), frozenset(["300x250"]), (BASE + shift * 60, BASE + 40 * HOUR))
               for shift in range(0, 24 * 60, 97) for t in rules]
    index = TargetingIndex(entries)
    c = Context(("300x250",), None, None, None, None, None, None)
    seen = set()
    for minute in range(0, 30 * 60, 7):
        now = BASE + minute * 60
        matched, _ = ask(index, c, now)
        assert matched == scan(entries, c, now), minute
        seen.add(len(matched))
    assert len(seen) > 10  # the book really changed along the way

