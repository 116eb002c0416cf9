"""Decisions: targeting (failing closed), tiers, weights, sticky variants, one campaign per page."""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import gc
import itertools
import random
import time
from collections import Counter
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adserve import decision
from adserve.decision import DRAWS, WHOLE_TIER, AdNeed, Decider, Inventory
from adserve.ledger import Ledger
from adserve.model import (IAB_SIZES, Budget, Campaign, Config, Creative, Daypart, Flight, FrequencyCap,
                           KeywordRule, Placement, Price, Site, Targeting, Variant)
from adserve.request import parse_slot_request
from adserve.state import MemoryState

from .conftest import NOON_ISH, FakeClock

UTC = dt.timezone.utc
DISPLAY_SIZES = [size for size in IAB_SIZES if size != "native"]
PLACEMENTS = {"special-offer": Placement(id="special-offer", type="display", sizes=["300x250"])}


def campaign(cid: int, tier="standard", weight=1.0, price=5.0, size="300x250", platform="ANY",
             variants=(("A", 1.0),), advertiser=None, **fields) -> Campaign:
    creative = Creative(id=f"cr-{cid}", size=size, platform=platform,
                        landing_url=f"https://adv{cid}.example/",
                        variants=[Variant(id=v, weight=w, image_url="/x.svg") for v, w in variants])
    fields.setdefault("flight", Flight(start=dt.datetime(2026, 1, 1, tzinfo=UTC),
                                       end=dt.datetime(2027, 1, 1, tzinfo=UTC)))
    return Campaign(id=cid, name=f"c{cid}", advertiser=advertiser or f"adv{cid}", tier=tier,
                    weight=weight, price=Price(model="cpm", amount=price), creatives=[creative],
                    **fields)


def decider(campaigns, clock=None, unique_advertiser=False, seed=3, timezone="America/New_York"):
    config = Config(site=Site(timezone=timezone, unique_advertiser_per_page=unique_advertiser),
                    placements=PLACEMENTS, campaigns=list(campaigns))
    return Decider(Inventory(config), Ledger(timezone), MemoryState(), unique_advertiser,
                   random.Random(seed), clock or FakeClock())


def request(slots=1, **body):
    body.setdefault("page", {"item_id": "a1", "section": "politics", "keywords": ["senate"],
                             "url": "https://news.example/politics/a1"})
    body.setdefault("device", "desktop")
    body.setdefault("country", "US")
    body.setdefault("user", {"id": "reader-1"})
    body["slots"] = [{"id": f"s{i}", "type": "display", "sizes": ["300x250"]} for i in range(slots)]
    return parse_slot_request(body, PLACEMENTS, 20)


def fill_ids(d: Decider, req, needs=None) -> list:
    needs = needs or [AdNeed(s.id, s.sizes, s.placement) for s in req.slots]
    fills = asyncio.run(d.decide(req, needs))
    return [f.campaign.id if f else None for f in fills.values()]


@pytest.mark.parametrize("targeting, body, served", [
    (Targeting(sections=["politics"]), {}, True),
    (Targeting(sections=["sports"]), {}, False),
    (Targeting(sections=["politics"]), {"page": {"item_id": "a"}}, False),  # no section: closed
    (Targeting(keywords=KeywordRule(include=["senate", "house"])), {}, True),
    (Targeting(keywords=KeywordRule(include=["budget"])), {}, False),
    (Targeting(keywords=KeywordRule(exclude=["senate"])), {}, False),
    (Targeting(keywords=KeywordRule(exclude=["tragedy"])), {"page": {"section": "politics"}}, False),
    (Targeting(devices=["mobile"]), {}, False),
    (Targeting(devices=["desktop"]), {"device": None}, False),
    (Targeting(countries=["US", "CA"]), {}, True),
    (Targeting(countries=["DE"]), {}, False),
    (Targeting(countries=["US"]), {"country": None}, False),
    (Targeting(url_patterns=["https://news.example/politics/*"]), {}, True),
    (Targeting(url_patterns=["https://news.example/sports/*"]), {}, False),
    (Targeting(placements=["special-offer"]), {}, False),  # slot has no placement
])
def test_targeting_rules_and_failing_closed(targeting, body, served):
    d = decider([campaign(1, targeting=targeting)])
    assert fill_ids(d, request(**body)) == ([1] if served else [None])


def test_dayparts_follow_local_time_across_dst():
    evening = Targeting(dayparts=[Daypart(days=["sat", "sun"], start="08:00", end="09:00")])
    clock = FakeClock(dt.datetime(2026, 3, 7, 13, 30, tzinfo=UTC))  # Sat 08:30 EST (UTC-5)
    d = decider([campaign(1, targeting=evening)], clock)
    assert fill_ids(d, request()) == [1]
    clock.now = dt.datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # Sun 09:30 EDT: DST began at 2:00
    assert fill_ids(d, request()) == [None]
    clock.now = dt.datetime(2026, 3, 8, 12, 30, tzinfo=UTC)  # Sun 08:30 EDT
    assert fill_ids(d, request()) == [1]


def test_platform_and_flight_and_status():
    d = decider([campaign(1, platform="MWEB"), campaign(2, platform="WEB")])
    assert fill_ids(d, request()) == [2]
    assert fill_ids(d, request(device="mobile")) == [1]
    late = campaign(3, flight=Flight(start=NOON_ISH + dt.timedelta(hours=1),
                                     end=NOON_ISH + dt.timedelta(days=1)))
    assert fill_ids(decider([late]), request()) == [None]
    assert fill_ids(decider([campaign(4, status="paused")]), request()) == [None]


def test_highest_tier_wins_whatever_the_price():
    d = decider([campaign(1, tier="standard", price=50), campaign(2, tier="sponsorship", price=1),
                 campaign(3, tier="house", price=0)])
    assert {fill_ids(d, request())[0] for _ in range(50)} == {2}


def test_house_fills_only_when_nothing_else_can():
    d = decider([campaign(1, targeting=Targeting(sections=["sports"])), campaign(9, tier="house", price=0)])
    assert fill_ids(d, request()) == [9]


def test_weight_times_ecpm_sets_the_share():
    d = decider([campaign(1, weight=3, price=2), campaign(2, weight=1, price=2),
                 campaign(3, weight=1, price=4)])
    counts = Counter(fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(6000))
    # shares 6 : 2 : 4
    assert counts[1] / 6000 == pytest.approx(0.5, abs=0.03)
    assert counts[2] / 6000 == pytest.approx(1 / 6, abs=0.03)
    assert counts[3] / 6000 == pytest.approx(1 / 3, abs=0.03)


def test_cpc_ranks_through_expected_ctr():
    from adserve.decision import ecpm
    cpc = campaign(1)
    cpc.price = Price(model="cpc", amount=0.5)
    cpc.expected_ctr = 0.004
    assert ecpm(cpc) == pytest.approx(2.0)


def test_variants_are_sticky_per_reader_and_weighted():
    d = decider([campaign(1, variants=(("A", 1.0), ("B", 3.0)))])
    creative = d.inventory.campaigns[1].creatives[0]
    for user in ("r1", "r2", "r3"):
        assert len({d.variant(creative, user).id for _ in range(20)}) == 1
    shares = Counter(d.variant(creative, f"reader-{i}").id for i in range(8000))
    assert shares["B"] / 8000 == pytest.approx(0.75, abs=0.02)


def test_one_page_never_shows_a_campaign_twice():
    d = decider([campaign(1), campaign(2)])
    for _ in range(20):
        ids = fill_ids(d, request(slots=3))
        assert sorted(ids, key=str) == [1, 2, None]


def test_unique_advertiser_per_page():
    pair = [campaign(1, advertiser="Same"), campaign(2, advertiser="Same")]
    assert fill_ids(decider(pair, unique_advertiser=True), request(slots=2)).count(None) == 1
    assert None not in fill_ids(decider(pair, unique_advertiser=False), request(slots=2))


def test_index_serves_section_targeted_and_untargeted():
    d = decider([campaign(1, targeting=Targeting(sections=["sports"])),
                 campaign(2, targeting=Targeting(sections=["politics", "world"]))])
    assert fill_ids(d, request()) == [2]
    assert fill_ids(d, request(page={"section": "sports"})) == [1]
    assert fill_ids(d, request(page={"section": "culture"})) == [None]


def test_large_tiers_are_sampled_with_exact_shares():
    """Rejection sampling keeps each eligible campaign's share of its tier."""
    eligible = [campaign(1, price=10.0)] + [campaign(n, price=1.0) for n in range(2, 31)]
    blocked = [campaign(n, price=5.0, targeting=Targeting(devices=["mobile"])) for n in range(31, 61)]
    d = decider(eligible + blocked)
    counts = Counter(fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(4000))
    assert set(counts) <= set(range(1, 31))
    assert counts[1] / 4000 == pytest.approx(10 / 39, abs=0.03)
    assert counts[2] / 4000 == pytest.approx(1 / 39, abs=0.015)


def test_counters_refusing_most_of_a_tier_leave_exact_shares_among_the_rest():
    """Draws are refused by caps, then the rest of the tier is offered whole: the campaigns
    still allowed keep their shares, none of the refused serves."""
    book = [campaign(n, price=float(n), frequency_cap=FrequencyCap(count=1, period="day"))
            for n in range(1, 41)]
    d = decider(book)
    moment = d.ledger.moment(d.clock())
    readers = [f"r{i}" for i in range(3000)]
    for reader in readers:
        for seen in book[4:]:  # campaigns 5..40 (98.8% of the tier's score) capped for everyone
            d.state.seed(d.ledger.charge(seen, "impression", reader, moment), time.time())
    counts = Counter(fill_ids(d, request(user={"id": reader}))[0] for reader in readers)
    assert set(counts) == {1, 2, 3, 4}
    for cid in (1, 2, 3, 4):
        assert counts[cid] / len(readers) == pytest.approx(cid / 10, abs=0.03)


def test_decision_reads_few_counters_in_a_big_book():
    book = [campaign(n, price=1.0 + n % 7, frequency_cap=FrequencyCap(count=3, period="day"))
            for n in range(1, 3001)]
    d = decider(book)
    offered = []
    original = d.state.reserve

    async def counting(needs, taken, hold):
        needs = [list(options) for options in needs]  # all of them, as the Redis store sends them
        offered.append(sum(len(options) for options in needs))
        return await original(needs, taken, hold)

    d.state.reserve = counting
    assert fill_ids(d, request(slots=2)) != [None, None]
    assert len(offered) == 1 and offered[0] <= 2 * DRAWS + 2  # one call per page: a few draws per slot


def test_targeting_outcome_is_reused_until_a_daypart_edge():
    clock = FakeClock(NOON_ISH + dt.timedelta(seconds=5))
    d = decider([campaign(1, targeting=Targeting(dayparts=[Daypart(start="10:00", end="10:01")]))],
                clock, timezone="America/New_York")  # 15:00 UTC is 10:00 there
    looked_up = []
    original = d.inventory.lookup
    d.inventory.lookup = lambda *a: looked_up.append(a) or original(*a)
    readers = [request(user={"id": f"r{i}"}) for i in range(3)]
    assert [fill_ids(d, r) for r in readers] == [[1]] * 3
    assert len(looked_up) == 1  # the next readers of the page reuse the targeting outcome
    assert fill_ids(d, request(device="mobile")) == [1] and len(looked_up) == 2  # another context
    clock.advance(minutes=1)
    assert fill_ids(d, readers[0]) == [None]  # the window's end was an edge of the kept outcome


def test_kept_contexts_drop_the_least_recently_used(monkeypatch):
    """An article read again stays kept while contexts read once pass through (FIFO dropped it)."""
    monkeypatch.setattr(decision, "CONTEXTS", 2)
    d = decider([campaign(1)])
    looked_up = []
    original = d.inventory.lookup
    d.inventory.lookup = lambda *a: looked_up.append(a) or original(*a)
    for section in ("a", "b", "a", "c", "a", "b"):
        assert fill_ids(d, request(page={"section": section})) == [1]
    assert len(looked_up) == 4  # a, b, c, then b again: "a" was never dropped


def kept_bytes(d: Decider) -> tuple[int, int, int]:
    """What the decider's kept contexts hold at least, in bytes: 16 per candidate (its position
    and running sum), the text of their keys (keywords, URL, section), and the rows that their
    tiers not drawn from yet gather from and the inventory dropped, each counted once."""
    candidates = sum(len(group.cumulative) for kept in d._contexts.values() for group in kept.tiers)
    text = sum(len(c.url or "") + len(c.section or "") + sum(map(len, c.keywords or ())) for c in d._contexts)
    own = {id(candidates) for candidates, _ in d.inventory._rows.values()}
    rows = {id(group._candidates): group._candidates.nbytes for kept in d._contexts.values()
            for group in kept.tiers if isinstance(group._candidates, np.ndarray) and id(group._candidates) not in own}
    return 16 * candidates, text, sum(rows.values())


def test_kept_contexts_hold_bounded_bytes_however_broad_the_book_or_long_the_page(monkeypatch):
    """Contexts bounded in number only held 1.4 GB (8,192 new contexts of a 10,000-campaign book
    that each matched: every view a new URL or keyword set), and a page's keywords and URL are
    part of its key: what kept contexts hold is bounded in bytes too, the least recently used
    dropped first; the newest is always kept."""
    monkeypatch.setattr(decision, "HELD_BYTES", 4096, raising=False)
    d = decider([campaign(i) for i in range(40)])  # every page matches all 40
    for k in range(30):
        assert fill_ids(d, request(page={"section": "politics", "keywords": [f"k{k}"]})) != [None]
        assert sum(kept_bytes(d)) <= 4096 and len(d._contexts) >= 1
    long = [f"{k:02d}" + "x" * 62 for k in range(50)]
    d = decider([campaign(1, targeting=Targeting(url_patterns=["https://news.example/*"]))])
    for k in range(30):
        page = {"section": "s" * 2048, "keywords": long, "url": f"https://news.example/{k}/" + "y" * 2000}
        assert fill_ids(d, request(page=page)) == [1]
        assert len(d._contexts) == 1 or sum(kept_bytes(d)) <= 4096


def test_kept_contexts_count_the_rows_the_inventory_dropped_that_they_hold(monkeypatch):
    """A context's tiers not drawn from yet hold its (sizes, device) row of the inventory (a
    candidate per campaign of the book); the inventory keeps ``ROWS`` rows, but kept contexts kept
    the rows it dropped: a slot's sizes in a new order each view (109,600 orders of the 8 sizes)
    held a row per context, 216 MB at 10,000 campaigns, whatever the contexts' own bytes."""
    monkeypatch.setattr(decision, "HELD_BYTES", 64 * 1024, raising=False)
    monkeypatch.setattr(decision, "ROWS", 2)
    book = [campaign(i, tier=("standard", "house")[i % 2], size=("300x250", "728x90")[i // 2 % 2])
            for i in range(400)]  # a row: 3,200 bytes; the house tier is never drawn
    d = decider(book)
    for k, sizes in enumerate(itertools.islice(itertools.permutations(DISPLAY_SIZES), 60)):
        assert fill_ids(d, request(), [AdNeed("s0", sizes, None)]) != [None]
        assert sum(kept_bytes(d)) <= 64 * 1024, k


def test_a_dropped_row_stops_counting_once_the_last_context_holding_it_is_dropped(monkeypatch):
    """The bytes of a row the inventory dropped count while a kept context holds it, and no
    longer once that context is dropped too (the row is then gone): else every row ever dropped
    would count for good, and a server past ``HELD_BYTES`` of them would keep one context."""
    monkeypatch.setattr(decision, "HELD_BYTES", 64 * 1024, raising=False)
    monkeypatch.setattr(decision, "ROWS", 2)
    book = [campaign(i, tier=("standard", "house")[i % 2], size=("300x250", "728x90")[i // 2 % 2])
            for i in range(400)]  # a row: 3,200 bytes; a context's own: ~6,600
    d = decider(book)
    for sizes in itertools.islice(itertools.permutations(DISPLAY_SIZES), 60):  # ~190 KB of rows dropped
        fill_ids(d, request(), [AdNeed("s0", sizes, None)])
    for k in range(8):  # one row, kept by the inventory: 8 contexts fit
        page = {"section": "politics", "keywords": [f"k{k}"]}
        assert fill_ids(d, request(page=page), [AdNeed("s0", ("300x250", "728x90"), None)]) != [None]
    assert len(d._contexts) >= 8


def test_a_kept_context_worked_out_again_counts_its_bytes_once(monkeypatch):
    """A kept context past its edge (here: the clock set back) is worked out again in its place:
    its old bytes stop counting, else each replacement would add them for good, and the decider
    would end up keeping one context."""
    monkeypatch.setattr(decision, "HELD_BYTES", 4096, raising=False)
    clock = FakeClock()
    d = decider([campaign(i) for i in range(40)], clock)  # a context: ~850 bytes
    pages = [request(page={"section": "politics", "keywords": [f"k{k}"]}) for k in range(3)]
    for page in pages:
        fill_ids(d, page)
    for _ in range(10):
        clock.advance(seconds=-1)
        fill_ids(d, pages[0])
    assert len(d._contexts) == 3


def test_a_daypart_edge_after_a_dst_jump_is_in_local_time():
    night = Targeting(dayparts=[Daypart(start="03:00", end="04:00")])
    clock = FakeClock(dt.datetime(2026, 3, 8, 6, 50, tzinfo=UTC))  # 01:50 EST; at 02:00 it is 03:00 EDT
    d = decider([campaign(1, targeting=night)], clock)
    assert fill_ids(d, request()) == [None]
    clock.now = dt.datetime(2026, 3, 8, 7, 5, tzinfo=UTC)  # 03:05 EDT, 15 minutes later
    assert fill_ids(d, request()) == [1]


def test_a_flight_starting_mid_minute_serves_from_its_first_second():
    clock = FakeClock(NOON_ISH + dt.timedelta(seconds=10))
    starts = NOON_ISH + dt.timedelta(seconds=30)
    late = campaign(2, tier="sponsorship", flight=Flight(start=starts, end=starts + dt.timedelta(days=1)))
    d = decider([campaign(1), late], clock)  # once eligible, the higher tier always wins
    assert fill_ids(d, request()) == [1]
    clock.advance(seconds=19)  # 29 s: one second before its start, in the same minute
    assert fill_ids(d, request(user={"id": "r1"})) == [1]
    clock.advance(seconds=1)
    assert [fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(20)] == [2] * 20


def with_creatives(c: Campaign, *specs: tuple[str, float]) -> Campaign:
    """``c`` with one creative per (size, weight) instead of its own."""
    c.creatives = [Creative(id=f"cr-{c.id}-{n}", size=size, weight=weight,
                            landing_url=f"https://adv{c.id}.example/",
                            variants=[Variant(id="A", image_url="/x.svg")])
                   for n, (size, weight) in enumerate(specs)]
    return c


@pytest.mark.parametrize("sizes, specs", [
    (("300x250",), [("300x250", 1.0), ("300x250", 1.0)]),           # two creatives of one size
    (("728x90", "320x50"), [("728x90", 1.0), ("320x50", 1.0)]),     # one per size of the slot
    (("300x250",), [("300x250", 1.0), ("300x250", 1.0), ("300x250", 1.0), ("160x600", 1.0)]),
])
def test_a_campaigns_share_does_not_grow_with_its_creatives(sizes, specs):
    d = decider([with_creatives(campaign(1), *specs), with_creatives(campaign(2), (sizes[0], 1.0))])
    counts = Counter(fill_ids(d, request(user={"id": f"r{i}"}), [AdNeed("s0", sizes, None)])[0]
                     for i in range(4000))
    assert counts[1] / 4000 == pytest.approx(0.5, abs=0.03)


def test_creatives_share_their_campaigns_draws_by_their_own_weights():
    d = decider([with_creatives(campaign(1), ("300x250", 1.0), ("300x250", 3.0), ("300x250", 0.0))])
    counts = Counter(asyncio.run(d.decide(request(user={"id": f"r{i}"}),
                                          [AdNeed("s0", ("300x250",), None)]))["s0"].creative.id
                     for i in range(4000))
    assert counts["cr-1-1"] / 4000 == pytest.approx(0.75, abs=0.03)
    assert "cr-1-2" not in counts  # weight 0: never shown


def test_weight_zero_never_serves_even_when_the_rest_of_its_tier_is_refused():
    capped = campaign(2, frequency_cap=FrequencyCap(count=1, period="day"))
    d = decider([campaign(1, weight=0.0), capped])
    served = []
    for _ in range(10):
        fills = asyncio.run(d.decide(request(), [AdNeed("s0", ("300x250",), None)]))
        if fills["s0"] is not None:
            served.append(fills["s0"].campaign.id)
            assert asyncio.run(d.bill("impression", fills["s0"].campaign.id, "reader-1", f"hit{len(served)}",
                                      86400, fills["s0"].reservation))
    assert served == [2]


@pytest.mark.parametrize("night, window, served_minutes", [
    (dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC), ("02:30", "03:30"), 30),   # spring: 03:00-03:30 EDT
    (dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC), ("01:30", "02:30"), 30),   # 01:30-02:00 EST
    (dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC), ("01:00", "01:30"), 60),  # fall: both 01:00-01:30
    (dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC), ("01:30", "02:00"), 60),
])
def test_kept_targeting_outcomes_agree_with_a_fresh_server_across_dst(night, window, served_minutes):
    """Minute by minute through a DST night, the kept outcome answers as a fresh decider would."""
    targeting = Targeting(dayparts=[Daypart(start=window[0], end=window[1])])
    clock = FakeClock(night)  # local midnight in New York
    kept = decider([campaign(1, targeting=targeting)], clock)
    served = 0
    for _ in range(6 * 60):
        answer = fill_ids(kept, request())
        assert answer == fill_ids(decider([campaign(1, targeting=targeting)], clock), request()), clock.now
        served += answer == [1]
        clock.advance(minutes=1)
    assert served == served_minutes


def test_a_thompson_creative_splits_new_readers_by_its_shares_and_remembers_each():
    """No counted events yet: the variants split new readers evenly (not 1:3 by weight), and
    each reader's first variant is kept in the store and shown again."""
    d = decider([campaign(1, variants=(("A", 1.0), ("B", 3.0)), variant_optimization="thompson")])
    need = [AdNeed("s0", ("300x250",), None)]
    first = {f"r{i}": asyncio.run(d.decide(request(user={"id": f"r{i}"}), need))["s0"].variant.id
             for i in range(1000)}
    assert Counter(first.values())["B"] / 1000 == pytest.approx(0.5, abs=0.06)
    for reader in ("r1", "r2", "r3"):
        assert asyncio.run(d.state.assign(f"ab:r:cr-1:{reader}", "other", 600)) == first[reader]
        again = {asyncio.run(d.decide(request(user={"id": reader}), need))["s0"].variant.id for _ in range(10)}
        assert again == {first[reader]}


def test_readers_without_an_id_split_variants_by_weight_afresh_each_time():
    d = decider([campaign(1, variants=(("A", 1.0), ("B", 3.0)))])
    creative = d.inventory.campaigns[1].creatives[0]
    shares = Counter(d.variant(creative, None).id for _ in range(4000))
    assert shares["B"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_each_billable_event_charges_its_campaigns_price_model():
    cpc = campaign(2)
    cpc.price = Price(model="cpc", amount=0.5)
    d = decider([campaign(1, price=4.0), cpc])
    assert [d.charge_micros(kind, cid) for cid in (1, 2, 99) for kind in ("impression", "click")] == [
        4000, 0, 0, 500_000, 0, 0]  # CPM 4.00 a thousand; CPC 0.50 a click; an unknown campaign nothing


def test_a_click_before_its_impression_pixel_leaves_the_reservation_to_the_pixel():
    """The click may arrive first (the pixel is slow): it is charged on its own, and the pixel
    still confirms what the decision reserved, within a daily budget of one."""
    d = decider([campaign(1, budget=Budget(metric="impressions", daily=1), pacing="asap")])
    fill = asyncio.run(d.decide(request(), [AdNeed("s0", ("300x250",), None)]))["s0"]
    assert asyncio.run(d.bill("click", 1, "reader-1", "hit-click", 86400, fill.reservation))
    assert asyncio.run(d.bill("impression", 1, "reader-1", "hit-view", 86400, fill.reservation))


def test_a_tier_whose_campaigns_are_all_refused_gives_way_to_the_next():
    """Small tier or big (drawn, then offered whole), once every campaign in it is refused by its
    cap the next tier fills: the page is neither left empty nor asked forever."""
    for size in (1, WHOLE_TIER + 4):
        book = [campaign(n, tier="sponsorship", frequency_cap=FrequencyCap(count=1, period="day"))
                for n in range(1, size + 1)]
        d = decider(book + [campaign(99, tier="house", price=0)])
        moment = d.ledger.moment(d.clock())
        for seen in book[1:]:  # all but campaign 1 already seen today
            d.state.seed(d.ledger.charge(seen, "impression", "reader-1", moment), time.time())  # the store's clock
        assert serve_and_bill(d, request(), 3) == [1, 99, 99]


def test_a_higher_tiers_campaign_on_one_slot_leaves_the_next_slot_to_the_next_tier():
    d = decider([campaign(1, tier="sponsorship"), campaign(2, tier="standard")])
    for _ in range(5):
        assert fill_ids(d, request(slots=2)) == [1, 2]


def test_a_store_that_reads_every_option_at_once_fills_every_slot():
    """The Redis store gets each need's options in one call: a campaign asked for by one need
    and not taken must still be offered, unchanged, to the next."""
    d = decider([campaign(1), campaign(2)])
    original = d.state.reserve

    async def eager(needs, taken, hold):
        return await original([list(options) for options in needs], taken, hold)

    d.state.reserve = eager
    for _ in range(10):
        assert sorted(fill_ids(d, request(slots=2))) == [1, 2]


@pytest.mark.parametrize("limit", [{"frequency_cap": FrequencyCap(count=1, period="day")},
                                   {"budget": Budget(metric="impressions", daily=1), "pacing": "asap"}])
def test_a_decision_holds_its_counters_until_its_pixel(limit):
    """Two pages before the first pixel arrives: a cap or a budget of one serves only one of them."""
    d = decider([campaign(1, **limit)])
    assert [fill_ids(d, request()) for _ in range(2)] == [[1], [None]]


def serve_and_bill(d, req, times: int) -> list:
    """The campaign each of ``times`` decisions filled, each impression billed at once."""
    served = []
    for i in range(times):
        fill = asyncio.run(d.decide(req, [AdNeed("s0", ("300x250",), None)]))["s0"]
        served.append(fill and fill.campaign.id)
        if fill is not None:
            assert asyncio.run(d.bill("impression", fill.campaign.id, req.user_id, f"bill-{i}", 86400,
                                      fill.reservation))
    return served


def test_the_same_seed_makes_the_same_choices_and_a_decider_needs_no_clock():
    book = [campaign(n, price=float(n)) for n in range(1, 6)]
    runs = [[fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(40)]
            for d in (decider(book, seed=7), decider(book, seed=7))]
    assert runs[0] == runs[1] and len(set(runs[0])) > 1
    now = dt.datetime.now(UTC)
    live = campaign(1, flight=Flight(start=now - dt.timedelta(days=1), end=now + dt.timedelta(days=1)))
    config = Config(site=Site(timezone="UTC"), placements=PLACEMENTS, campaigns=[live])
    assert fill_ids(Decider(Inventory(config), Ledger("UTC"), MemoryState()), request()) == [1]  # the real time


def test_a_creative_of_weight_zero_never_serves_even_as_the_only_one_of_the_slots_size():
    d = decider([with_creatives(campaign(1), ("300x250", 1.0), ("728x90", 0.0))])
    assert fill_ids(d, request(), [AdNeed("s0", ("728x90",), None)]) == [None]


def test_a_campaign_whose_creatives_all_have_weight_zero_never_serves_and_the_page_is_answered():
    """The config loads it with a warning; alone in the book (or in the part of it a context
    reads) it was matched with no creative to show, and the page raised IndexError (a 500)."""
    d = decider([with_creatives(campaign(1), ("300x250", 0.0))])
    assert fill_ids(d, request()) == [None]
    d = decider([with_creatives(campaign(1, targeting=Targeting(sections=["sports"])), ("300x250", 1.0)),
                 with_creatives(campaign(2, targeting=Targeting(sections=["world"])), ("300x250", 1.0)),
                 with_creatives(campaign(3), ("300x250", 0.0), ("728x90", 0.0))])
    assert fill_ids(d, request()) == [None]  # "politics": no part of its own, only campaign 3


def test_a_slot_gets_only_creatives_of_its_sizes():
    d = decider([with_creatives(campaign(1), ("300x250", 1.0), ("160x600", 1.0))])
    sizes = {asyncio.run(d.decide(request(user={"id": f"r{i}"}), [AdNeed("s0", ("160x600",), None)]))["s0"].creative.size
             for i in range(30)}
    assert sizes == {"160x600"}


def test_cheap_campaigns_keep_their_shares_too():
    """Scores under 1 (eCPM 0.25 against 0.75) are weighted like any other."""
    d = decider([campaign(1, price=0.25), campaign(2, price=0.75)])
    counts = Counter(fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(3000))
    assert counts[2] / 3000 == pytest.approx(0.75, abs=0.03)


def test_every_campaign_of_a_big_tier_gets_its_draws():
    d = decider([campaign(n) for n in range(1, 3 * WHOLE_TIER + 1)])  # last in the tier too
    served = Counter(fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(1500))
    assert set(served) == set(range(1, 3 * WHOLE_TIER + 1))


def test_pages_from_two_replicas_keep_their_own_reservations():
    """Two deciders (replicas) on one store, each reader capped at one: every page's pixel
    confirms its own reservation, none is mistaken for the other replica's."""
    store = MemoryState()
    fills = []
    for readers in (("a", "b"), ("c", "d")):
        d = decider([campaign(1, frequency_cap=FrequencyCap(count=1, period="day"))])
        d.state = store
        fills += [(d, reader, asyncio.run(d.decide(request(user={"id": reader}),
                                                   [AdNeed("s0", ("300x250",), None)]))["s0"]) for reader in readers]
    assert all(fill is not None for _d, _reader, fill in fills)
    assert [asyncio.run(d.bill("impression", 1, reader, f"pixel-{reader}", 86400, fill.reservation))
            for d, reader, fill in fills] == [True] * 4


def test_an_unconfirmed_decision_holds_the_cap_for_five_minutes_by_default():
    clock = FakeClock()
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=1, period="day"))], clock)
    d.state = MemoryState(clock=lambda: clock().timestamp())
    assert fill_ids(d, request()) == [1]
    clock.advance(seconds=299)
    assert fill_ids(d, request()) == [None]
    clock.advance(seconds=1)
    assert fill_ids(d, request()) == [1]


def test_pages_of_other_articles_share_the_targeting_outcome_when_no_campaign_reads_urls():
    d = decider([campaign(1, targeting=Targeting(sections=["politics"]))])
    looked_up = []
    original = d.inventory.lookup
    d.inventory.lookup = lambda *a: looked_up.append(a) or original(*a)
    for n in range(3):
        page = {"item_id": f"a{n}", "section": "politics", "keywords": ["senate"],
                "url": f"https://news.example/politics/a{n}"}
        assert fill_ids(d, request(page=page)) == [1]
    assert len(looked_up) == 1


def test_pages_in_one_second_share_a_campaigns_bounds_but_not_a_readers_cap_nor_a_reservation():
    """The decision keeps a campaign's reader-free limits for the ledger's second: the pages of
    that second still each reserve their own, and each reader meets their own cap."""
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=1, period="day")),
                 campaign(2, budget=Budget(metric="impressions", daily=3), pacing="asap"),
                 campaign(3, tier="house")])
    needs = [AdNeed("s0", ("300x250",), None), AdNeed("s1", ("300x250",), None)]
    pages, reservations = [], []
    for reader in ["a", "b", "a", "b", "c", None]:
        fills = asyncio.run(d.decide(request(user={"id": reader} if reader else {}), needs)).values()
        pages.append(sorted((f.campaign.id for f in fills if f), key=str) + [None] * (None in fills))
        reservations += [f.reservation for f in fills if f and f.reservation]
    assert pages == [[1, 2], [1, 2], [2, 3], [3, None], [1, 3], [3, None]]  # no reader id: the cap skips
    assert len(set(reservations)) == len(reservations) == 6  # the house campaign reserves nothing


def scored(*scores: float) -> list[decision.Candidate]:
    return [decision.Candidate(campaign(n), (), score) for n, score in enumerate(scores, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.just(5e-324), st.floats(1e-3, 1e6), st.sampled_from([1.0, 0.1, 1e20])),
                max_size=40))
def test_a_group_of_arrays_sums_as_a_group_of_lists(scores):
    """The inventory builds groups from arrays (numpy sums, candidates gathered from its row when
    first used): the same candidates, running sums, total, last scored candidate and wholeness, to
    the last bit, as plain sums over a list of candidates."""
    candidates = scored(*scores)
    listed = decision.Group(candidates)
    row = np.array([x for c in candidates for x in (None, c)], dtype=object)  # as a row of the inventory's
    gathered = decision.Group(row, np.array(scores, dtype=float), np.arange(1, 2 * len(scores), 2))
    sums = list(itertools.accumulate(scores))
    last = max((i for i, score in enumerate(scores) if score > 0), default=len(scores) - 1)
    for group in (listed, gathered):
        assert list(group.cumulative) == sums and group.total == (sums[-1] if sums else 0.0)
        assert group.last == last and group.whole == (len(scores) <= WHOLE_TIER or group.total <= 0)
        assert list(group.candidates) == candidates


def test_a_kept_context_holds_no_lists_of_the_tiers_it_has_not_drawn_from():
    """The tiers below the one a page fills from are kept as arrays: with thousands of contexts of
    hundreds of candidates kept, lists of them made every garbage collection walk them all."""
    d = decider([campaign(1, tier="sponsorship")] + [campaign(n) for n in range(2, 31)])
    assert fill_ids(d, request()) == [1]
    [kept] = d._contexts.values()
    best, below = kept.tiers
    assert not any(isinstance(thing, list) for thing in gc.get_referents(below))
    assert [c.campaign.id for c in below.candidates] == list(range(2, 31)) and len(best.candidates) == 1


def test_a_weighted_order_puts_zero_weights_last():
    group = decision.Group(scored(0.0, 1.0, 2.0))
    rng = random.Random(5)
    orders = [[c.campaign.id for c in group.order(rng)] for _ in range(200)]
    assert {o[-1] for o in orders} == {1} and {o[0] for o in orders} == {2, 3}


def test_a_weighted_order_ranks_each_place_by_the_shares_of_those_left():
    """Every order of a small tier comes with the probability of drawing it one by one without
    replacement (score over the scores still left), whichever way the order is produced."""
    group = decision.Group(scored(1.0, 2.0, 3.0, 0.0))
    rng = random.Random(11)
    n = 12000
    orders = Counter(tuple(c.campaign.id for c in group.order(rng)) for _ in range(n))
    scores = {1: 1.0, 2: 2.0, 3: 3.0}
    assert all(order[-1] == 4 for order in orders)
    for first, second, third in itertools.permutations(scores):
        expected = scores[first] / 6 * scores[second] / (6 - scores[first])
        assert orders[(first, second, third, 4)] / n == pytest.approx(expected, abs=0.015)


def test_free_campaigns_of_one_tier_share_it_equally():
    """House campaigns cost nothing (score = weight x the 0.001 floor): a weighted order by
    ``random() ** (1 / score)`` underflowed to 0.0 for most draws and the tie went to the first."""
    d = decider([campaign(n, tier="house", price=0.0) for n in (1, 2)])
    counts = Counter(fill_ids(d, request(user={"id": f"r{i}"}))[0] for i in range(3000))
    assert counts[1] / 3000 == pytest.approx(0.5, abs=0.03)


def test_an_empty_group_scores_nothing_and_orders_nothing():
    group = decision.Group([])
    assert group.total == 0 and group.whole and list(group.order(random.Random(1))) == []


def test_group_draws_drop_repeats_in_draw_order():
    """A store is offered each campaign once per tier: the likely one is drawn often, offered once."""
    group = decision.Group(scored(100.0, 1.0))
    rng = random.Random(5)
    for _ in range(50):
        drawn = list(group.draw(rng, DRAWS))
        assert len(drawn) == len(set(drawn)) and drawn[0] is group.candidates[0]


def test_a_draw_rounded_onto_the_top_of_the_sums_takes_the_last_candidate():
    """Scores so small (subnormal) that ``random() * total`` rounds to the total itself: the draw
    lands past the last running sum and must still pick the last candidate, not fail."""
    group = decision.Group(scored(5e-324, 5e-324))
    drawn = Counter(c.campaign.id for seed in range(40) for c in group.draw(random.Random(seed), 1))
    assert set(drawn) == {1, 2}


def test_a_draw_rounded_onto_the_top_of_the_sums_never_lands_on_a_zero_weight():
    """The top of the sums is also the running sum of zero weights listed last: a draw rounded
    onto it (the largest ``random()`` times subnormal scores) takes the last candidate with a score."""
    group = decision.Group(scored(5e-324, 5e-324, 0.0))
    top = FixedRandom(1 - 2**-53)
    assert [c.campaign.id for c in group.draw(top, 1)] == [2]
    assert [c.campaign.id for c in group.order(top)] == [2, 1, 3]


def test_variants_split_by_their_own_weights_beyond_two():
    d = decider([campaign(1, variants=(("A", 1.0), ("B", 1.0), ("C", 1.0)))])
    creative = d.inventory.campaigns[1].creatives[0]
    shares = Counter(d.variant(creative, f"reader-{i}").id for i in range(3000))
    assert all(shares[v] / 3000 == pytest.approx(1 / 3, abs=0.03) for v in "ABC")


class FixedRandom(random.Random):
    """A generator whose every ``random()`` is one point: the edges of a split, exactly."""

    def __init__(self, point: float) -> None:
        super().__init__(0)
        self.point = point

    def random(self) -> float:
        return self.point


def test_a_variant_of_weight_zero_never_serves_even_at_the_bottom_of_the_range():
    d = decider([campaign(1, variants=(("A", 0.0), ("B", 1.0)))])
    d.rng = FixedRandom(0.0)
    assert d.variant(d.inventory.campaigns[1].creatives[0], None).id == "B"


def test_the_top_of_the_range_goes_to_the_last_variant_when_the_shares_sum_under_one():
    """Seven equal shares add up to 0.9999999999999998: the largest ``random()`` lands past them."""
    d = decider([campaign(1, variants=tuple((v, 1.0) for v in "ABCDEFG"))])
    d.rng = FixedRandom(1 - 2**-53)
    assert d.variant(d.inventory.campaigns[1].creatives[0], None).id == "G"


def test_the_top_of_the_range_never_goes_to_a_variant_of_weight_zero_listed_last():
    """The shares' rounding sliver at the top goes to the last variant that has a weight."""
    d = decider([campaign(1, variants=(*((v, 1.0) for v in "ABCDEFG"), ("Z", 0.0)))])
    d.rng = FixedRandom(1 - 2**-53)
    assert d.variant(d.inventory.campaigns[1].creatives[0], None).id == "G"


def test_billing_an_unknown_campaign_is_refused():
    """A pixel of a campaign removed from the config since (or a forged id) bills nothing."""
    d = decider([campaign(1)])
    assert not asyncio.run(d.bill("impression", 99, "reader-1", "hit", 86400))
    assert not asyncio.run(d.bill("click", "1", "reader-1", "hit", 86400))


def test_a_hit_of_an_unknown_campaign_still_marks_its_token_once():
    """Billed with its token's mark (one store call): a repeat is told apart though nothing bills."""
    d = decider([campaign(1)])
    marked = [asyncio.run(d.bill("impression", 99, "reader-1", "hit", 86400, mark=("tok:impression:hit", attempt)))
              for attempt in ("try-1", "try-2", "try-1")]
    assert marked == [False, None, False]  # the first attempt asking again is told its answer


def test_an_impression_and_a_click_of_one_hit_are_billed_apart():
    """Idempotency is per event kind: the impression of a hit does not make its click a retry."""
    d = decider([campaign(1, budget=Budget(metric="clicks", daily=1), pacing="asap")])
    bill = lambda kind, hit: asyncio.run(d.bill(kind, 1, "reader-1", hit, 86400))  # noqa: E731
    assert [bill("impression", "h1"), bill("click", "h1"), bill("click", "h2")] == [True, True, False]


def test_lookup_keeps_each_sizes_and_device_pairs_candidates_apart(monkeypatch):
    """Candidates are kept per (sizes, device) pair, a few pairs at a time: whichever pairs come
    and go, each lookup offers exactly the creatives that fit its slot and device, tier by tier."""
    monkeypatch.setattr(decision, "ROWS", 2)
    rng = random.Random(5)
    sizes, platforms = ["300x250", "728x90", "320x50"], ["ANY", "WEB", "MWEB", "APP"]
    campaigns = []
    for cid in range(1, 41):
        c = campaign(cid, tier=rng.choice(["sponsorship", "standard", "remnant"]))
        c.creatives = [Creative(id=f"cr-{cid}-{n}", size=rng.choice(sizes), platform=rng.choice(platforms),
                                landing_url="https://adv.example/", variants=[Variant(id="A", image_url="/x.svg")])
                       for n in range(rng.randint(1, 3))]
        campaigns.append(c)
    inventory = decider(campaigns).inventory
    now = NOON_ISH.timestamp()
    for _ in range(60):
        slot = tuple(rng.sample(sizes, rng.randint(1, 2)))
        device = rng.choice([None, "desktop", "mobile", "tablet", "app"])
        context = decision.Context(slot, None, "politics", frozenset(), None, device, "US")
        expected: dict[int, list] = {}
        for c in sorted(campaigns, key=lambda c: decision.TIERS.index(c.tier)):
            fitting = [cr.id for cr in c.creatives if cr.size in slot and decision.platform_fits(cr.platform, device)]
            if fitting:
                expected.setdefault(decision.TIERS.index(c.tier), []).append((c.id, fitting))
        tiers, _ = inventory.lookup(context, now, NOON_ISH)
        assert [[(x.campaign.id, [cr.id for cr in x.creatives]) for x in tier.candidates] for tier in tiers] == list(expected.values())
        assert len(inventory._rows) <= 2


def test_a_small_tier_whose_first_draws_are_refused_keeps_exact_shares_among_the_rest():
    """A tier of up to ``WHOLE_TIER`` is ordered by one weighted draw, then a race among the rest
    only when that draw is refused: the allowed campaigns still serve in proportion to weight x
    eCPM (chi-square, 2 degrees of freedom, p = 0.001), the refused ones never."""
    book = [campaign(1, weight=1.0, price=1.0), campaign(2, weight=2.0, price=1.0),
            campaign(3, weight=1.0, price=6.0, frequency_cap=FrequencyCap(count=1, period="day")),
            campaign(4, weight=2.0, price=2.0),
            campaign(5, weight=4.0, price=4.0, frequency_cap=FrequencyCap(count=1, period="day"))]
    assert len(book) <= WHOLE_TIER
    d = decider(book, seed=17)
    moment = d.ledger.moment(d.clock())
    readers = [f"r{i}" for i in range(3500)]
    for reader in readers:  # 3 and 5 (22 of the tier's 29) capped for everyone: most first draws refused
        for seen in (book[2], book[4]):
            d.state.seed(d.ledger.charge(seen, "impression", reader, moment), time.time())
    counts = Counter(fill_ids(d, request(user={"id": reader}))[0] for reader in readers)
    assert set(counts) == {1, 2, 4}
    shares = {1: 1.0, 2: 2.0, 4: 4.0}
    chi2 = sum((counts[c] - len(readers) * s / 7) ** 2 / (len(readers) * s / 7) for c, s in shares.items())
    assert chi2 < 13.82


# A book and pages drawn to meet every rule's edge: mixed case in rules and pages, URL globs with
# character classes, ``?``, query strings and fragments, flights and dayparts ending on the clock's
# steps, paused campaigns, creatives of weight 0, slots of several sizes and placements.
ORACLE_START = dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # a Saturday; DST starts the next night
ORACLE_PLACEMENTS = {"top": Placement(id="top", type="display", sizes=["300x250", "728x90"]),
                     "Side": Placement(id="Side", type="display", sizes=["320x50"])}
ORACLE_SIZES = ["300x250", "728x90", "320x50"]
ORACLE_KEYWORDS = ["senate", "Budget", "Élan", "ß"]
ORACLE_URLS = ["https://x.example/a/b", "https://x.example/A/b", "https://x.example/a", "https://x.example/a?q=1",
               "https://x.example/a#f", "https://x.example/", ""]
ORACLE_GLOBS = ["https://x.example/a/*", "https://x.example/a*", "https://x.example/[aA]/*", "*?q=*", "*#f",
                "https://x.example/a", "", "*", "https://x.example/?", "https://x.example/[!a]*"]


def _some(values: list) -> st.SearchStrategy[list]:
    """Mostly unset, so that campaigns often pass all their rules."""
    return st.one_of(st.just([]), st.just([]), st.just([]),
                     st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))


_oracle_targeting = st.builds(
    Targeting, sections=_some(["politics", "Sports"]),
    keywords=st.builds(KeywordRule, include=_some(ORACLE_KEYWORDS), exclude=_some(ORACLE_KEYWORDS)),
    devices=_some(["desktop", "mobile", "tablet", "app"]), countries=_some(["US", "DE"]),
    placements=_some(["top", "Side"]), url_patterns=_some(ORACLE_GLOBS),
    dayparts=st.one_of(st.just([]), st.just([]), st.lists(st.builds(
        Daypart, days=st.lists(st.sampled_from(["fri", "sat", "sun"]), min_size=1, unique=True),
        start=st.sampled_from(["00:00", "01:30", "02:30", "12:00"]),
        end=st.sampled_from(["02:00", "03:00", "13:00", "24:00"])).filter(lambda p: p.end > p.start),
        min_size=1, max_size=2)))


@st.composite
def _oracle_book(draw) -> list[Campaign]:
    book = []
    for cid in range(draw(st.integers(1, 10))):
        start = ORACLE_START + dt.timedelta(minutes=30 * draw(st.integers(-20, 40)))
        creatives = [Creative(id=f"cr{cid}-{n}", size=draw(st.sampled_from(ORACLE_SIZES)),
                              platform=draw(st.sampled_from(["ANY", "WEB", "MWEB", "APP"])),
                              weight=draw(st.sampled_from([1.0, 1.0, 0.0])), landing_url="https://a.example/",
                              variants=[Variant(id="A", image_url="/x.svg")])
                     for n in range(draw(st.integers(1, 3)))]
        book.append(Campaign(id=cid, name=f"c{cid}", advertiser=f"a{cid}", tier=draw(st.sampled_from(decision.TIERS)),
                             status=draw(st.sampled_from(["active", "active", "paused"])),
                             weight=draw(st.sampled_from([1.0, 2.0, 0.0])), price=Price(model="cpm", amount=1.0),
                             flight=Flight(start=start, end=start + dt.timedelta(hours=draw(st.integers(1, 30)))),
                             targeting=draw(_oracle_targeting), creatives=creatives))
    return book


_oracle_page = st.fixed_dictionaries({"page": st.fixed_dictionaries({
    "section": st.sampled_from([None, "politics", "POLITICS", "sports", "Sports", ""]),
    "keywords": st.one_of(st.none(), st.lists(st.sampled_from(ORACLE_KEYWORDS + ["SENATE", "budget", "élan", "SS"]),
                                              max_size=3)),
    "url": st.sampled_from([None, *ORACLE_URLS])}),
    "device": st.sampled_from([None, "desktop", "mobile", "tablet", "app"]),
    "country": st.sampled_from([None, "US", "DE"])})
_oracle_slot = st.one_of(
    st.builds(lambda sizes: {"id": "s", "type": "display", "sizes": sizes},
              st.lists(st.sampled_from(ORACLE_SIZES), min_size=1, max_size=3)),
    st.builds(lambda name: {"id": "s", "placement": name}, st.sampled_from(["top", "Side"])))
_PLATFORMS = {"WEB": {"desktop", "tablet"}, "MWEB": {"mobile"}, "APP": {"app"}}


def _minute(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def oracle(book: list[Campaign], req, now: dt.datetime) -> list[set[int]]:
    """The campaigns that may fill the page's one slot, per tier (best first, empty ones left
    out), from the README's rules (no counters: every limit allows): active, weight above 0, in
    flight, every rule set admits the page (case aside in sections and keywords; a rule the page
    cannot answer excludes), a creative of weight above 0 of one of the slot's sizes made for
    the device's platform."""
    page, slot, local = req.page, req.slots[0], now.astimezone(ZoneInfo("America/New_York"))
    keywords = None if page.keywords is None else {k.lower() for k in page.keywords}
    minute, day = local.hour * 60 + local.minute, ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    tiers = {}
    for c in book:
        t, include, exclude = c.targeting, {k.lower() for k in c.targeting.keywords.include}, \
            {k.lower() for k in c.targeting.keywords.exclude}
        if not (c.status == "active" and c.weight > 0 and c.flight.start <= now < c.flight.end
                and (not t.sections or (page.section or "").lower() in {s.lower() for s in t.sections})
                and (not (include or exclude) or keywords is not None and (not include or include & keywords)
                     and not exclude & keywords)
                and (not t.devices or req.device in t.devices) and (not t.countries or req.country in t.countries)
                and (not t.placements or slot.placement in t.placements)
                and (not t.url_patterns or page.url is not None
                     and any(fnmatch.fnmatchcase(page.url, glob) for glob in t.url_patterns))
                and (not t.dayparts or any(day in p.days and _minute(p.start) <= minute < _minute(p.end)
                                           for p in t.dayparts))
                and any(cr.weight > 0 and cr.size in slot.sizes
                        and (cr.platform == "ANY" or req.device in _PLATFORMS[cr.platform]) for cr in c.creatives)):
            continue
        tiers.setdefault(decision.TIERS.index(c.tier), set()).add(c.id)
    return [tiers[tier] for tier in sorted(tiers)]


@settings(max_examples=200, deadline=None)
@given(_oracle_book(), st.lists(st.tuples(_oracle_page, _oracle_slot, st.lists(st.integers(-3600, 20000), min_size=2,
                                                                                max_size=4)),
                                min_size=1, max_size=8),
       st.integers(1, 3), st.sampled_from([200, 1 << 30]))
def test_decisions_fill_from_what_the_documented_rules_admit(book, views, contexts, held):
    """One decider, its kept contexts few (and small in bytes), its clock going forward and back:
    each page, viewed at a few moments (from its kept context while that holds), has the
    candidates the rules admit, tier by tier, and fills its slot from the best tier (empty only
    when none)."""
    clock = FakeClock(ORACLE_START)
    d = decider(book, clock)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decision, "CONTEXTS", contexts)
        patch.setattr(decision, "HELD_BYTES", held)
        for body, slot, steps in views:
            req = parse_slot_request({**body, "slots": [slot]}, ORACLE_PLACEMENTS, 20)
            for step in steps:
                clock.advance(seconds=step)
                admitted = oracle(book, req, clock.now)
                fill = asyncio.run(d.decide(req, [AdNeed("s", req.slots[0].sizes, req.slots[0].placement)]))["s"]
                kept = next(reversed(d._contexts.values()))  # the page's: the newest is always kept
                assert [{c.campaign.id for c in group.gathered()} for group in kept.tiers] == admitted, clock.now
                assert (fill.campaign.id in admitted[0]) if fill else not admitted


def test_two_deciders_over_one_inventory_each_keep_their_own_view_of_its_campaigns():
    """What a decider keeps of a campaign (its names on the page, its bounds) sits on the
    inventory's candidates: a second decider over the same inventory, here one that does not
    keep advertisers apart, never takes the first one's for its own."""
    pair = [campaign(1, advertiser="same"), campaign(2, advertiser="same")]
    config = Config(site=Site(timezone="America/New_York"), placements=PLACEMENTS, campaigns=pair)
    inventory = Inventory(config)
    apart, together = (Decider(inventory, Ledger("America/New_York"), MemoryState(), unique, random.Random(3),
                               FakeClock()) for unique in (True, False))
    for _ in range(3):
        assert fill_ids(apart, request(slots=2)).count(None) == 1
        assert None not in fill_ids(together, request(slots=2))


def test_a_readers_hourly_cap_counts_afresh_in_the_next_local_hour():
    """A campaign's kept bounds name the cap's counter of their local hour: the first page of
    the next hour reads the next hour's counter, though its paced limits have not moved."""
    clock = FakeClock(NOON_ISH + dt.timedelta(minutes=59, seconds=58))
    d = decider([campaign(1, frequency_cap=FrequencyCap(count=1, period="hour"))], clock)
    assert fill_ids(d, request()) == [1]
    clock.advance(seconds=1)
    assert fill_ids(d, request()) == [None]  # the same hour: capped
    clock.advance(seconds=1)
    assert fill_ids(d, request()) == [1]
