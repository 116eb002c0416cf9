"""The state stores: one contract (reserve, settle, marks) kept by the embedded and the Redis store,
and the embedded store's expiry that never stalls the loop."""

from __future__ import annotations

import asyncio
import uuid
from typing import Iterator

import pytest

from adserve.ledger import Limit
from adserve.state import CUT, MemoryState, Option, RedisState, Replayed, StateUnavailable, choose
from adserve.state.memory import STEP

from .live import free_port

HOLD = 300
START = 1_800_000_000.0


def count(key: str, amount: float, ttl: int) -> Limit:
    return Limit(key, None, amount, "impression", ttl)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request):
    """Each store on a clock the test moves (Redis expires keys on its own clock: the tests
    below only move time within the keys' TTLs)."""
    now = [START]
    if request.param == "memory":
        state = MemoryState(clock=lambda: now[0])
    else:
        state = RedisState(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex}:",
                           clock=lambda: now[0])
    state.now = now
    yield state
    await state.close()


def capped(campaign: int, reader: str, cap: int, reservation: str | None) -> Option:
    """A campaign with a per-reader cap and an unbounded click counter (checked only if bounded)."""
    limit = Limit(f"c{campaign}:cap:{reader}", cap, 1, "impression", 3600)
    return Option((f"c{campaign}",), (limit,), (limit,), reservation)


def free(campaign: int) -> Option:
    return Option((f"c{campaign}",), (), (), None)


async def test_each_need_takes_the_first_option_that_fits_and_is_free(store):
    picks = await store.reserve([[capped(1, "r", 0, "p1.1"), free(2)],  # cap 0: never fits
                                 [free(2), free(3)],                    # 2 is taken by the first need
                                 [capped(4, "r", 1, "p1.4")]], set(), HOLD)
    assert picks == [1, 1, 0]
    assert await store.reserve([[free(5)], [free(6)]], {"c5"}, HOLD) == [None, 0]  # taken before


async def test_a_cut_tier_stops_the_walk_only_when_nothing_fit_before_it(store):
    assert await store.reserve([[capped(1, "r", 0, "p1.1"), CUT, free(2)], [free(3)]], set(), HOLD) == []
    assert await store.reserve([[free(1), CUT], [capped(2, "r", 0, "p2.2"), CUT]], set(), HOLD) == [0]
    assert await store.reserve([[capped(4, "r", 1, "p4.4"), CUT], [capped(5, "r", 1, "p5.5")]], set(), HOLD) == [0, 0]
    assert await store.reserve([[capped(6, "r", 1, "p6.6")], [CUT, capped(7, "r", 1, "p7.7")]], set(), HOLD) == [0]


async def test_a_reservation_holds_its_counters_until_its_pixel_confirms_it(store):
    assert await store.reserve([[capped(1, "r", 1, "p1.1")]], set(), HOLD) == [0]
    assert await store.reserve([[capped(1, "r", 1, "p2.1")]], set(), HOLD) == [None]  # held
    assert await store.get_many(["c1:cap:r"]) == [1.0]
    charges = capped(1, "r", 1, None).checks
    assert await store.settle("bill:impression:a", 600, "p1.1", charges)  # confirmed: billable
    assert await store.settle("bill:impression:a", 600, "p1.1", charges)  # a retry: the same answer
    store.now[0] += HOLD + 1
    assert await store.get_many(["c1:cap:r"]) == [1.0]  # a confirmed reservation is never released
    assert await store.reserve([[capped(1, "r", 1, "p3.1")]], set(), HOLD) == [None]


async def test_an_unconfirmed_reservation_is_released_after_the_hold_time(store):
    assert await store.reserve([[capped(1, "r", 1, "p1.1")]], set(), HOLD) == [0]
    store.now[0] += HOLD - 1
    assert await store.reserve([[capped(1, "r", 1, "p2.1")]], set(), HOLD) == [None]
    store.now[0] += 1
    assert await store.reserve([[capped(1, "r", 1, "p3.1")]], set(), HOLD) == [0]  # p1.1 released
    charges = capped(1, "r", 1, None).checks
    assert not await store.settle("bill:impression:late", 600, "p1.1", charges)  # p3.1 holds the cap
    assert await store.settle("bill:impression:on-time", 600, "p3.1", charges)
    assert await store.get_many(["c1:cap:r"]) == [1.0]


async def test_a_charge_without_reservation_fits_or_moves_nothing(store):
    a, b = Limit("a", 4, 2, "click", 600), Limit("b", None, 5, "click", 600)
    assert await store.settle("bill:click:1", 600, None, (a, b))
    assert await store.settle("bill:click:2", 600, None, (a, b))
    assert not await store.settle("bill:click:3", 600, None, (a, b))  # 6 would pass 4
    assert await store.get_many(["a", "b", "missing"]) == [4.0, 10.0, 0.0]


async def test_a_settle_with_a_mark_moves_counters_only_for_the_first_hit_of_its_token(store):
    a = Limit("a", 4, 2, "click", 600)
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-1")) is True
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-9")) is None  # a repeat
    assert not await store.first_time("tok:click:1", 600)  # marked by the settle
    await store.forget("tok:click:1")  # its event could not be written: the retry counts once
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-10")) is True
    assert await store.settle("bill:click:2", 600, None, (a,), mark=("tok:click:2", "try-2")) is True
    assert await store.settle("bill:click:3", 600, None, (a,), mark=("tok:click:3", "try-3")) is False  # 6 would pass 4
    assert await store.get_many(["a"]) == [4.0]


async def test_a_settle_whose_answer_was_lost_tells_the_same_attempt_what_it_did(store):
    """A shared store may run a settle whose reply never arrives (it came after the wait): the
    hit is logged undecided and its reconcile asks again with the same attempt. That attempt
    holds the mark, so it is told the outcome the lost call had; another attempt is a repeat."""
    a = Limit("a", 4, 2, "click", 600)
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-1")) is True
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-1")) is True
    assert await store.settle("bill:click:1", 600, None, (a,), mark=("tok:click:1", "try-2")) is None
    assert await store.get_many(["a"]) == [2.0]  # moved once


async def test_a_mark_is_new_once_and_can_be_forgotten(store):
    assert await store.first_time("tok:impression:n1", 600)
    assert not await store.first_time("tok:impression:n1", 600)
    await store.forget("tok:impression:n1")
    assert await store.first_time("tok:impression:n1", 600)


async def test_an_assignment_keeps_its_first_value(store):
    assert await store.assign("ab:r:cr1:reader", "A", 600) == "A"
    assert await store.assign("ab:r:cr1:reader", "B", 600) == "A"
    assert await store.assign("ab:r:cr1:reader", "C", 600) == "A"  # "B" was never written either


async def test_memory_state_expires_keys_without_a_full_pass():
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("cap", 1.0, 120), count("day", 2.0, 86400)], now[0])
    assert await state.first_time("tok", 600) and not await state.first_time("tok", 600)
    assert len(state) == 3
    now[0] += 180
    state.seed([count("day", 1.0, 86400)], now[0])  # any write sweeps what has expired
    assert len(state) == 2 and await state.get_many(["cap", "day"]) == [0.0, 3.0]
    now[0] += 600
    assert await state.first_time("tok", 600)  # its mark expired and was swept
    assert len(state) == 2


async def test_replayed_keys_already_due_are_swept_too():
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("old", 1.0, 60)], now[0] - 3600)  # from an hour-old event
    assert len(state) == 1 and await state.get_many(["old"]) == [0.0]
    now[0] += 120
    state.seed([count("new", 1.0, 60)], now[0])
    assert len(state) == 1


async def test_a_checkpoint_leaves_out_what_open_reservations_hold():
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    assert await state.reserve([[capped(1, "r", 2, "p1.1")], [capped(2, "r", 2, "p1.2")]], set(), HOLD) == [0, 0]
    assert await state.settle("bill:impression:a", 600, "p1.1", capped(1, "r", 2, None).checks)
    assert {key: value for key, (value, _expires) in state.snapshot().items()} == {
        "c1:cap:r": 1.0, "c2:cap:r": 0.0, "bill:impression:a": 1.0}


async def test_an_open_reservation_keeps_only_keys_and_costs():
    """A server holds one per answered ad for the hold time: no object of the decision (its
    options, limits) may stay alive with it, only the counter keys and their costs."""
    state = MemoryState(clock=lambda: START)
    option = capped(1, "r", 2, "p1.1")
    assert await state.reserve([[option]], set(), HOLD) == [0]
    (held,) = state._reserved.values()
    assert held == ("c1:cap:r", 1) and all(type(part) in (str, int, float) for part in held)


async def test_every_hold_of_every_reservation_made_in_one_second_is_released(store):
    cap, day = Limit("c1:cap:r", 1, 1, "impression", 3600), Limit("c1:day", 10, 1, "impression", 86400)
    assert await store.reserve([[Option(("c1",), (cap, day), (cap, day), "p1.1")]], set(), HOLD) == [0]
    assert await store.reserve([[capped(2, "s", 1, "p2.2")]], set(), HOLD) == [0]  # another page
    keys = ["c1:cap:r", "c1:day", "c2:cap:s"]
    assert await store.get_many(keys) == [1.0, 1.0, 1.0]
    store.now[0] += HOLD + 1
    assert await store.reserve([[capped(9, "z", 1, "p9.9")]], set(), HOLD) == [0]  # releases what is due
    assert await store.get_many(keys) == [0.0, 0.0, 0.0]


async def test_forgetting_what_was_never_marked_is_harmless(store):
    await store.forget("tok:impression:never")
    assert await store.first_time("tok:impression:never", 600)


async def test_a_hold_on_a_counter_erased_meanwhile_is_released_without_going_below_zero(store):
    """A reader is forgotten while a reservation holds their cap: its release must neither fail
    nor leave the counter at -1 (which would allow one impression past the cap)."""
    assert await store.reserve([[capped(1, "r", 1, "p1.1")]], set(), HOLD) == [0]
    await store.forget("c1:cap:r")  # erasure of the reader's counters
    store.now[0] += HOLD + 1
    assert await store.reserve([[capped(1, "r", 1, "p2.1")]], set(), HOLD) == [0]
    assert await store.get_many(["c1:cap:r"]) == [1.0]
    assert await store.reserve([[capped(1, "r", 1, "p3.1")]], set(), HOLD) == [None]


async def test_a_refused_charge_is_refused_again_when_retried(store):
    a = Limit("a", 1, 2, "click", 600)
    assert not await store.settle("bill:click:1", 600, None, (a,))
    assert not await store.settle("bill:click:1", 600, None, (a,))  # the same answer, not a bill


async def test_a_store_rebuilt_from_the_log_holds_its_counts_and_marks(store):
    replayed = Replayed()
    replayed.seed([count("c1:day", 2.0, 86400)], START - 60)
    replayed.mark("tok:impression:n1", 600, START - 60)
    await store.restore(replayed)
    assert await store.get_many(["c1:day"]) == [2.0]
    assert not await store.first_time("tok:impression:n1", 600)


async def test_memory_marks_and_counters_last_exactly_their_ttl():
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    assert await state.open()  # nothing held yet
    assert await state.first_time("tok", 600)
    state.seed([count("cap", 1.0, 60)], now[0])
    assert not await state.open()
    now[0] += 60
    state.seed([count("cap", 1.0, 60)], now[0])  # the first count expired this second
    assert await state.get_many(["cap"]) == [1.0]
    now[0] += 540
    assert await state.first_time("tok", 600)


async def test_memory_keys_are_swept_when_they_expire_not_before():
    now = [START - START % 60]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("a", 1.0, 150)], now[0])
    now[0] += 90
    state.seed([count("b", 1.0, 3600)], now[0])  # a sweep while "a" is still live
    now[0] += 120
    state.seed([count("c", 1.0, 3600)], now[0])
    assert len(state) == 2  # "a" expired and was swept


async def test_a_checkpoint_loads_back_without_what_expired_since():
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("a", 1.0, 60), count("b", 3.0, 600)], now[0])
    saved = state.snapshot()
    now[0] += 60
    loaded = MemoryState(clock=lambda: now[0])
    loaded.load_snapshot(saved.items())
    assert len(loaded) == 1 and await loaded.get_many(["a", "b"]) == [0.0, 3.0]


def counted(options: list, read: list) -> Iterator:
    """``options`` one by one, each appended to ``read`` when the store takes it."""
    for option in options:
        read.append(option)
        yield option


async def test_options_are_read_only_as_far_as_the_walk_needs(store):
    """A decision's options are worked out lazily (each costs the ledger's checks): a store that
    finds a fit early leaves the rest unread, the Redis store too (a few per need per round trip)."""
    read: list = []
    needs = [counted([free(n) for n in range(1, 50)], read), counted([free(n) for n in range(50, 99)], read)]
    assert await store.reserve(needs, set(), HOLD) == [0, 0]
    assert len(read) <= 8


async def test_a_fit_deep_in_the_options_is_found_and_each_pick_is_reserved_once(store):
    full = [capped(n, "r", 0, f"p1.{n}") for n in range(1, 12)]  # cap 0: never fits
    needs = [[capped(20, "r", 1, "p1.20"), free(21)],
             counted(full + [free(30), free(31)], []),
             [free(30), capped(32, "r", 0, "p1.32"), free(33)]]
    assert await store.reserve(needs, set(), HOLD) == [0, 11, 2]  # 30 is taken by the second need
    assert await store.reserve([[capped(20, "r", 1, "p2.20")]], set(), HOLD) == [None]  # held once, not twice
    assert await store.reserve([counted(full + [CUT, free(40)], []), [free(41)]], set(), HOLD) == []


async def test_an_option_offered_to_several_needs_is_checked_where_it_comes_up_and_reserved_once(store):
    """A widget's positions are offered the same options (the same objects; the Redis store sends
    each once per request and points back to it): an option is taken by one need at most, and
    each need sees whether it still fits and is still free."""
    never, first, second = capped(1, "r", 0, "p1.1"), capped(2, "r", 2, "p1.2"), capped(3, "r", 2, "p1.3")
    assert await store.reserve([[first, second], [never, first, second], [second, never]], set(), HOLD) \
        == [0, 2, None]
    shared = capped(5, "r", 1, "p2.5")
    assert await store.reserve([[capped(4, "r", 1, "p2.4"), shared], [shared], [shared]], set(), HOLD) \
        == [0, 0, None]
    assert await store.get_many([f"c{n}:cap:r" for n in range(1, 6)]) == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_the_walk_asks_take_once_per_free_option_in_order_until_one_takes():
    """``take`` checks and reserves in one call (the walk is most of a light page's decision):
    asked in order, once per option whose names are free, and never for a need's later options."""
    asked: list[str] = []

    def take(option: Option) -> bool:
        asked.append(option.names[0])
        return option.names[0] != "c2"

    needs = [[free(1), free(3)], [free(1), free(2), free(3), free(4)], [CUT, free(5)]]
    assert choose(needs, {"c9"}, take) == [0, 2]
    assert asked == ["c1", "c2", "c3"]


async def test_a_write_sweeps_a_bounded_step_of_a_busy_minutes_expired_keys():
    """A minute of a busy server's reader caps expires together (60,000-240,000 keys at 1,000-4,000
    pages a second): removed by one write, they stalled its answer for 15-60 ms once a minute."""
    now = [START - START % 60]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count(f"cap:{n}", 1.0, 60) for n in range(3 * STEP)], now[0])
    now[0] += 120
    left = []
    for _ in range(4):
        state.seed([count("day", 1.0, 86400)], now[0])  # each write sweeps a step
        left.append(len(state) - 1)
    assert left == [2 * STEP, STEP, 0, 0]


async def test_a_call_releases_a_bounded_step_of_a_busy_seconds_reservations():
    """Each second of answers comes due together five minutes later (3,000-12,000 reservations a
    second at 1,000-4,000 pages): released by one call, they stalled its answer for 2-9 ms."""
    now = [START]
    state = MemoryState(clock=lambda: now[0])
    for n in range(3 * STEP):
        assert await state.reserve([[capped(n, "r", 1, f"p{n}")]], set(), HOLD) == [0]
    now[0] += HOLD + 1
    held = []
    for _ in range(4):
        await state.reserve([], set(), HOLD)  # each call releases a step
        held.append(sum(await state.get_many([f"c{n}:cap:r" for n in range(3 * STEP)])))
    assert held == [2 * STEP, STEP, 0, 0]


@pytest.fixture
async def redis_pair(redis_url):
    """Two Redis stores sharing one fresh prefix: two replicas of one deployment."""
    prefix = f"t{uuid.uuid4().hex}:"
    pair = [RedisState(redis_url, prefix=prefix, clock=lambda: START) for _ in range(2)]
    yield pair
    for state in pair:
        await state.close()



@pytest.mark.redis
async def test_redis_keys_expire_after_the_ttl_they_were_created_with(redis_url):
    """Read from Redis itself: marks, assignments, outcomes and counters each carry their TTL."""
    import redis.asyncio as redis
    prefix = f"t{uuid.uuid4().hex}:"
    state, raw = RedisState(redis_url, prefix=prefix, clock=lambda: START), redis.from_url(redis_url)
    try:
        assert await state.first_time("tok", 60)
        assert await state.assign("ab:r:cr1:reader", "A", 120) == "A"
        assert await state.settle("bill:click:1", 180, None, (Limit("c1:clicks", 4, 1, "click", 240),))
        replayed = Replayed()  # a rebuild: each key lives as long as its first event left it
        replayed.seed([count("c1:day", 1.0, 600)], START - 100)
        replayed.seed([count("c1:day", 1.0, 600)], START - 10)
        replayed.mark("tok:old", 600, START - 300)
        await state.restore(replayed)
        keys = ("tok", "ab:r:cr1:reader", "bill:click:1", "c1:clicks", "c1:day", "tok:old")
        ttls = [await raw.pttl(prefix + key) for key in keys]
        assert [round(ttl / 1000) for ttl in ttls] == [60, 120, 180, 240, 500, 300]
    finally:
        await state.close()
        await raw.aclose()

@pytest.mark.redis
async def test_only_the_first_replica_to_reach_an_empty_redis_is_told_to_rebuild(redis_pair):
    """The others stay down until its restore is done; it is told again (a restore that failed)."""
    first, second = redis_pair
    assert await first.open() and first.down and first.rebuilding
    with pytest.raises(StateUnavailable, match="rebuilt"):
        await second.open()
    assert second.down and second.rebuilding
    assert await first.open()
    await first.restore(Replayed())
    assert not (first.down or first.rebuilding)
    assert not await second.open() and not await first.open()
    assert not (second.down or second.rebuilding)
    assert await second.get_many(["c1:day"]) == [0.0]  # and it is up


@pytest.mark.redis
async def test_no_replica_reserves_or_settles_limited_campaigns_until_the_rebuild_is_restored(redis_pair):
    """A cap full before Redis lost its data: while the log is replayed, both the rebuilding
    replica and the other serve only what no counter limits and defer hits; after, it is full."""
    rebuilder, other = redis_pair
    replayed = Replayed()
    replayed.seed([count("c1:cap:r", 1.0, 3600)], START)  # cap 1, reached
    assert await rebuilder.open()
    with pytest.raises(StateUnavailable):
        await other.open()
    for n, state in enumerate(redis_pair):
        assert await state.reserve([[capped(1, "r", 1, f"p1.{n}"), free(2)]], set(), HOLD) == [1]
        with pytest.raises(StateUnavailable):
            await state.settle(f"bill:{n}", 600, None, (count("c1:cap:r", 1.0, 3600),))
    await rebuilder.restore(replayed)
    assert not await other.open()
    for n, state in enumerate(redis_pair):
        assert await state.reserve([[capped(1, "r", 1, f"p2.{n}"), free(2)]], set(), HOLD) == [1]
        assert await state.reserve([[capped(3, f"r{n}", 1, f"p3.{n}"), free(2)]], set(), HOLD) == [0]


@pytest.mark.redis
async def test_a_rebuild_that_never_ends_lets_another_replica_rebuild_once_its_marker_expires(redis_url):
    prefix = f"t{uuid.uuid4().hex}:"
    dead, other = (RedisState(redis_url, prefix=prefix, clock=lambda: START, rebuild_within=1)
                   for _ in range(2))
    try:
        assert await dead.open()  # and it dies before its restore
        for _ in range(200):  # until the marker expires (the bound: against a hang)
            try:
                rebuilds = await other.open()
                break
            except StateUnavailable:
                await asyncio.sleep(0.02)
        assert rebuilds and other.down
        await other.restore(Replayed())
        assert not await other.open() and not other.down
    finally:
        for state in (dead, other):
            await state.close()


@pytest.mark.redis
async def test_a_published_change_reaches_every_replica_once_in_order(redis_pair):
    writer, reader = redis_pair
    await writer.publish("feed", b"one")
    await writer.publish("feed", b"two")
    await writer.publish("other", b"elsewhere")
    position, changes = await reader.follow("feed", "0")
    assert changes == [b"one", b"two"]
    assert await reader.follow("feed", position) == (position, [])  # nothing new
    first, changes = await reader.follow("feed", "0", batch=1)
    assert changes == [b"one"] and (await reader.follow("feed", first, batch=1))[1] == [b"two"]


@pytest.mark.redis
async def test_erasure_deletes_the_matching_keys_it_wants_and_nothing_else(redis_pair):
    state, _ = redis_pair
    for key in ("c1:cap:r1:20261125", "c1:cap:r10:20261125", "c1:cap:r2:20261125"):
        assert await state.first_time(key, 600)
    deleted = await state.delete_matching("*:r1*", lambda key: key.split(":")[2] == "r1")
    assert deleted == ["c1:cap:r1:20261125"]
    assert await state.first_time("c1:cap:r1:20261125", 600)  # gone
    assert not await state.first_time("c1:cap:r10:20261125", 600)  # kept
    assert await state.delete_matching("*:nobody*", lambda key: True) == []


@pytest.mark.redis
async def test_a_rebuild_skips_what_expired_and_works_in_batches(redis_pair):
    state, _ = redis_pair
    replayed = Replayed()
    replayed.seed([count("expired", 1.0, 600)], START - 600)  # its last second has passed
    for n in range(5):
        replayed.seed([count(f"live{n}", 1.0, 600)], START - 10)
    replayed.mark("tok:live", 600, START - 599)
    replayed.mark("tok:expired", 600, START - 600)
    await state.restore(replayed, batch=2)
    assert await state.get_many([f"live{n}" for n in range(5)] + ["expired"]) == [1.0] * 5 + [0.0]
    assert not await state.first_time("tok:live", 600) and await state.first_time("tok:expired", 600)


async def test_memory_keys_of_every_minute_are_swept_whenever_the_store_started():
    """Started mid-minute, written to within the minute its first key expires in: each key is
    dropped once its minute has passed, none left behind."""
    state = memory_from(START + 10)
    state.seed([count("x", 1.0, 30), count("y", 1.0, 90), count("z", 1.0, 150)], state.now[0])  # 3 minutes
    for seconds, key in ((10, "early"), (230, "late")):  # the first sweeps before x is due
        state.now[0] += seconds
        state.seed([count(key, 1.0, 3600)], state.now[0])
    assert len(state) == 2


async def test_a_memory_counter_stops_counting_against_its_limit_the_second_it_expires():
    state = memory_from(START)
    state.seed([count("c1:cap:r", 1.0, 60)], START)
    assert await state.reserve([[capped(1, "r", 1, "p1.1")]], set(), HOLD) == [None]
    state.now[0] += 60
    assert await state.reserve([[capped(1, "r", 1, "p2.1")]], set(), HOLD) == [0]



async def test_an_unreachable_redis_is_down_at_once_and_serves_only_what_no_counter_limits():
    """Nothing listens on the port: the first call marks the store down, later calls fail at
    once without trying, and a decision's reserve still places the options without counters."""
    state = RedisState(f"redis://127.0.0.1:{free_port()}/0", prefix="t:", wait=0.5)
    try:
        with pytest.raises(StateUnavailable):
            await state.get_many(["a"])
        assert state.down
        with pytest.raises(StateUnavailable, match="down"):
            await state.first_time("tok", 600)
        assert await state.reserve([[capped(1, "r", 5, "p1.1"), free(2)], [capped(3, "r", 5, "p1.3")]],
                                   set(), HOLD) == [1, None]
        with pytest.raises(StateUnavailable):
            await state.open()
        assert state.down
    finally:
        await state.close()

def memory_from(start: float) -> MemoryState:
    """An embedded store on a clock the test moves through ``state.now``."""
    now = [start]
    state = MemoryState(clock=lambda: now[0])
    state.now = now
    return state
