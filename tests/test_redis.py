"""Shared state in a real Redis: two replicas enforce one frequency cap and count a token once."""

from __future__ import annotations

import asyncio
import copy
import signal
import threading
import uuid

import pytest
import redis as sync_redis
import redis.asyncio

from adserve.ledger import Limit
from adserve.server import listener
from adserve.server.app import create_app
from adserve.state import Option, RedisState, Replayed, StateUnavailable

from .conftest import EXAMPLE_REQUEST, start_redis
from .live import free_port
from .test_accounting import LIMITED, limited_book, page
from .test_server import local, logged, post_slots

pytestmark = pytest.mark.redis


@pytest.fixture
async def state(redis_url):
    """A store with keys of its own in the session's Redis."""
    store = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    yield store
    await store.close()


def ttl_ms(url: str, state: RedisState, key: str) -> int:
    with sync_redis.Redis.from_url(url) as client:
        return client.pttl(state._prefix + key)


async def test_counters_add_expire_and_mark_once(redis_url):
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    a, b = Limit("a", 4.0, 1.5, "click", 60), Limit("b", None, 2.0, "click", 1)
    try:
        assert await state.get_many(["a", "b"]) == [0.0, 0.0]
        assert await state.settle("hit1", 60, None, (a, b))
        assert await state.settle("hit1", 60, None, (a, b))  # a retry: same answer, counted once
        assert await state.settle("hit2", 60, None, (a,))
        assert not await state.settle("hit3", 60, None, (a,))  # 4.5 would pass the limit of 4
        assert await state.get_many(["a", "b"]) == [3.0, 2.0]
        # each key expires after the TTL it was created with; a later charge does not extend it
        assert 0 < ttl_ms(redis_url, state, "b") <= 1000
        assert 59_000 < ttl_ms(redis_url, state, "a") <= 60_000
        assert await state.first_time("tok", 60) is True
        assert await state.first_time("tok", 60) is False
    finally:
        await state.close()


async def test_two_replicas_share_caps_and_token_dedup(aiohttp_client, make_server, redis_url, workdir):
    prefix = f"t{uuid.uuid4().hex}:"
    replicas = [await aiohttp_client(create_app(make_server(state=RedisState(redis_url, prefix),
                                                            writer=name)))
                for name in ("r1", "r2")]
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    first = (await post_slots(replicas[0], body))["s1"]
    for replica in replicas:  # the same token hit on both replicas counts once
        assert (await replica.get(local(first["impression_url"]))).status == 200
    assert [e["counted"] for e in logged(workdir, "impression")] == [True, False]
    for n in range(4):  # 12174 is capped at 5 a day per reader, across replicas
        fill = (await post_slots(replicas[n % 2], body))["s1"]
        assert fill["campaign_id"] == 12174
        await replicas[(n + 1) % 2].get(local(fill["impression_url"]))
    for replica in replicas:
        assert (await post_slots(replica, body))["s1"]["campaign_id"] == 90001



async def test_a_pixel_is_one_round_trip_to_redis(aiohttp_client, make_server, redis_url, workdir):
    """Marking the token and billing its campaign is one script call: a pixel's round trips to a
    shared store are most of its cost."""
    state = RedisState(redis_url, f"t{uuid.uuid4().hex}:")
    client = await aiohttp_client(create_app(make_server(state=state)))
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    fills = [(await post_slots(client, body))["s1"] for _ in range(2)]
    assert (await client.get(local(fills[0]["impression_url"]))).status == 200  # Redis learns the script
    sent = []
    issue = state._redis._issue
    state._redis._issue = lambda command, *rest: sent.append(command) or issue(command, *rest)
    for _ in range(2):  # counted, then a repeat
        assert (await client.get(local(fills[1]["impression_url"]))).status == 200
        assert len(sent) == 1
        sent.clear()
    assert [(e["counted"], e["billable"]) for e in logged(workdir, "impression")] == \
        [(True, True), (True, True), (False, False)]


async def views(client, readers) -> list[dict]:
    """The display fill of one page per reader."""
    return [(await post_slots(client, page(f"r{n}")))["s1"] for n in readers]


async def pixels(client, fills) -> None:
    for fill in fills:
        assert (await client.get(local(fill["impression_url"]))).status == 200


async def health_when(client, wanted) -> dict:
    """/healthz once ``wanted(health)`` (the watcher reconnects each second), bounded against a hang."""
    for _ in range(200):
        health = await (await client.get("/healthz")).json()
        if wanted(health):
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"/healthz never got there: {health}")


async def test_redis_killed_and_restarted_empty_mid_load(aiohttp_client, make_server, workdir, clock,
                                                         tmp_path):
    """Down: pages still answer (limited campaigns not served), pixels are logged and settled when
    Redis is back; back empty: counters and token marks are rebuilt from the log, so old pixels
    do not count again and the budget of 50 still holds."""
    limited_book(workdir, 100, 50)
    port = free_port()
    redis = start_redis(port, tmp_path)
    state = RedisState(f"redis://127.0.0.1:{port}/0", clock=lambda: clock().timestamp())
    client = await aiohttp_client(create_app(make_server(state=state)))

    try:
        seen = await views(client, range(20))
        await pixels(client, seen)  # 20 billed
        unpixeled = await views(client, range(20, 30))  # 10 reserved, their pixels come during the outage
        assert {f["campaign_id"] for f in seen + unpixeled} == {LIMITED}
        redis.kill()
        redis.wait(timeout=10)
        during = await views(client, range(30, 40))  # still answered, by campaigns without limits
        assert LIMITED not in {f.get("campaign_id") for f in during}
        await pixels(client, unpixeled)  # logged undecided
        assert (await health_when(client, lambda h: h["status"] == "degraded"))["failing"] == ["state"]
        assert "adserve_state_up 0.0" in await (await client.get("/metrics")).text()
        redis = start_redis(port, tmp_path)  # back, empty
        await health_when(client, lambda h: h["status"] == "ok")
        await pixels(client, seen)  # replayed: duplicates, not counted again
        more = await views(client, range(40, 100))
        await pixels(client, more)
    finally:
        redis.kill()
        redis.wait(timeout=10)
    impressions = [e for e in logged(workdir, "impression") if e["campaign"] == LIMITED]
    counted = [e["token"] for e in impressions if e["counted"]]
    assert len(counted) == len(set(counted))  # no hit counted twice
    assert sum(1 for e in impressions if e["billable"]) == 50
    assert sum(1 for e in impressions if e.get("reconciled") and e["billable"]) == 10
    assert sum(f.get("campaign_id") == LIMITED for f in more) == 20


async def test_a_budget_full_before_redis_lost_its_data_stays_full_through_its_rebuild(
        aiohttp_client, make_server, workdir, clock, tmp_path):
    """While the log is replayed (held here) the server and another replica reserve nothing
    limited and /healthz and /metrics say so; every hit of the window is settled after: the
    budget of 5 reached before the loss is never exceeded."""
    limited_book(workdir, 100, 5)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port, tmp_path)
    server = make_server(state=RedisState(url, clock=lambda: clock().timestamp()))
    client = await aiohttp_client(create_app(server))
    other = RedisState(url)
    replayed, rebuild = threading.Event(), server.replay.rebuild
    server.replay.rebuild = lambda decider: replayed.wait(30) and rebuild(decider)

    try:
        full = await views(client, range(5))
        await pixels(client, full)
        assert {f["campaign_id"] for f in full} == {LIMITED}
        redis.kill()
        redis.wait(timeout=10)
        redis = start_redis(port, tmp_path)  # back, empty
        during = await views(client, range(5, 10))  # the first finds the connection dead: down
        await health_when(client, lambda h: h["failing"] == ["state", "state_rebuild"])
        assert "adserve_state_rebuilding 1.0" in await (await client.get("/metrics")).text()
        with pytest.raises(StateUnavailable, match="rebuilt"):
            await other.open()
        assert await other.reserve([[capped_option(1), Option(("house",), (), (), None)]], set(), 300) == [1]
        during += await views(client, range(10, 15))
        await pixels(client, during)
        assert LIMITED not in {f.get("campaign_id") for f in during}
        replayed.set()
        await health_when(client, lambda h: h["status"] == "ok")
        assert not await other.open()
        after = await views(client, range(15, 20))
        await pixels(client, after)
    finally:
        replayed.set()
        redis.kill()
        redis.wait(timeout=10)
        await other.close()
    assert LIMITED not in {f.get("campaign_id") for f in after}
    assert sum(1 for e in logged(workdir, "impression") if e["campaign"] == LIMITED and e["billable"]) == 5


async def test_concurrent_calls_share_one_connection_each_with_its_own_answer(state):
    marks = await asyncio.gather(*(state.first_time(f"tok{n % 25}", 60) for n in range(50)))
    assert marks == [True] * 25 + [False] * 25 and not state.down


async def test_redis_assigns_a_value_once_with_its_ttl(state, redis_url):
    assert await state.assign("ab:r:x:reader", "A", 60) == "A"
    assert await state.assign("ab:r:x:reader", "B", 60) == "A"  # a second visit keeps the first
    assert 59_000 < ttl_ms(redis_url, state, "ab:r:x:reader") <= 60_000


async def test_thompson_assignments_and_counts_are_shared_by_replicas(redis_url):
    from adserve.decision import AdNeed, Decider, Inventory
    from adserve.ledger import Ledger as Book
    from adserve.model import Config

    from .test_decision import campaign, request

    prefix = f"t{uuid.uuid4().hex}:"
    config = Config(campaigns=[campaign(1, variants=(("A", 1.0), ("B", 1.0), ("C", 1.0)),
                                        variant_optimization="thompson")])
    replicas = [Decider(Inventory(config), Book("UTC"), RedisState(redis_url, prefix)) for _ in range(2)]
    need = [AdNeed("s0", ("300x250",), None)]
    try:
        for n in range(12):
            first = (await replicas[0].decide(request(user={"id": f"r{n}"}), need))["s0"].variant.id
            again = (await replicas[1].decide(request(user={"id": f"r{n}"}), need))["s0"].variant.id
            assert again == first
        hit = {"type": "impression", "creative": "cr-1", "variant": "B", "token": "t1"}
        await replicas[0].allocation.count(hit, 60)
        await replicas[1].allocation.count(hit, 60)  # the same hit again: counted once
        keys = [f"ab:n:cr-1:{v}:impression" for v in "ABC"]
        assert await replicas[1].state.get_many(keys) == [0.0, 1.0, 0.0]
    finally:
        for replica in replicas:
            await replica.state.close()


BUSY = """local t0 = redis.call('TIME')
repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1e6 + (t[2] - t0[2]) > tonumber(ARGV[1])"""


async def test_waiting_on_redis_is_not_counted_as_work_queued_behind(aiohttp_client, make_server, redis_url):
    """The shedder refuses requests queued behind too much admitted work. Requests suspended on a
    Redis round trip are not work: 16 of them held 300 ms by a busy Redis must not count as 16 x
    300 ms (at 32 connections on Redis that read as overload and refused a quarter of the pages)."""
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    client = await aiohttp_client(create_app(make_server(state=state)))
    await post_slots(client, EXAMPLE_REQUEST)  # connected, scripts loaded
    blocker = redis.asyncio.Redis.from_url(redis_url)
    before = listener.Work.done
    busy = asyncio.create_task(blocker.eval(BUSY, 0, 300_000))
    await asyncio.sleep(0.02)  # the busy script holds Redis; every request below waits behind it
    bodies = [{**EXAMPLE_REQUEST, "user_id": f"reader-{n}"} for n in range(16)]
    answers = await asyncio.gather(*(client.post("/v1/slots", json=body) for body in bodies))
    await busy
    assert [answer.status for answer in answers] == [200] * 16
    assert listener.Work.done - before < 1.0  # their own work: milliseconds; their waits: ~4.8 s
    await blocker.aclose()


async def test_scripts_run_again_after_redis_forgot_them(redis_url):
    """A restarted Redis has no scripts cached: the call sends the script whole, once."""
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    a = Limit("a", 2, 1, "impression", 60)
    try:
        assert await state.settle("hit1", 60, None, (a,))
        with sync_redis.Redis.from_url(redis_url) as client:
            client.script_flush()
        assert await state.settle("hit2", 60, None, (a,))
        assert not await state.settle("hit3", 60, None, (a,))
        assert not state.down
    finally:
        await state.close()


async def test_a_cancelled_call_leaves_the_answers_of_the_others_in_order(state):
    assert await state.assign("k1", "A", 60) == "A"
    cancelled = asyncio.create_task(state.assign("k2", "B", 60))
    await asyncio.sleep(0)  # sent, its reply not read yet
    cancelled.cancel()
    answers = await asyncio.gather(state.assign("k1", "X", 60), state.assign("k2", "C", 60),
                                   state.assign("k3", "D", 60))
    assert answers == ["A", "B", "D"] and not state.down


async def test_a_redis_that_stops_answering_marks_the_store_down_within_the_wait(tmp_path):
    """Every call in flight fails (after ``wait``, not never); once Redis answers again, ``open``
    reconnects and calls work."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    state = RedisState(f"redis://127.0.0.1:{port}/0", prefix="t:", wait=0.3)
    try:
        assert await state.open()  # empty: down until its rebuild (from no log) is restored
        await state.restore(Replayed())
        assert await state.first_time("tok0", 60)
        redis.send_signal(signal.SIGSTOP)
        calls = await asyncio.wait_for(asyncio.gather(  # the guard: 100 times the wait, against a hang
            *(state.first_time(f"tok{n}", 60) for n in range(1, 4)), return_exceptions=True), 30)
        assert all(isinstance(call, StateUnavailable) for call in calls) and state.down
        redis.send_signal(signal.SIGCONT)
        assert not await state.open()  # its data kept
        assert await state.first_time("tok4", 60) and not await state.first_time("tok0", 60)
    finally:
        redis.send_signal(signal.SIGCONT)
        redis.kill()
        redis.wait(timeout=10)
        await state.close()


async def test_a_pixel_refused_for_its_log_counts_once_on_its_retries_and_moves_counters_once(
        aiohttp_client, make_server, redis_url, workdir, monkeypatch):
    """The token is marked and the campaign billed in one script call, before the event is
    written: when the write fails (503), the mark is dropped again, so of the retries (sent at
    once) exactly one counts, billable, and the campaign's counters moved once in all."""
    import errno

    from adserve.events import files

    state = RedisState(redis_url, f"t{uuid.uuid4().hex}:")
    server = make_server(state=state)
    client = await aiohttp_client(create_app(server))
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    fill = (await post_slots(client, body))["s1"]
    real_write = files.os.write

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", disk_full)
    refused = await client.get(local(fill["impression_url"]))
    assert refused.status == 503 and refused.headers["Retry-After"]
    monkeypatch.setattr(files.os, "write", real_write)
    retries = await asyncio.gather(*(client.get(local(fill["impression_url"])) for _ in range(4)))
    assert [r.status for r in retries] == [200] * 4
    assert sorted((e["counted"], e["billable"]) for e in logged(workdir, "impression")) == \
        [(False, False)] * 3 + [(True, True)]
    decider = server.runtime.decider
    campaign = decider.inventory.campaigns[fill["campaign_id"]]
    charges = decider.ledger.charge(campaign, "impression", body["user"]["id"], decider.ledger.moment(decider.clock()))
    assert charges and await state.get_many([c.key for c in charges]) == [float(c.cost) for c in charges]


@pytest.mark.parametrize("unpackable", [True, None, "\ud800"])
async def test_a_command_that_cannot_be_sent_fails_alone_and_leaves_the_answers_in_order(state, unpackable):
    """A command whose arguments cannot be put in RESP (a type hiredis refuses, text that is not
    UTF-8) fails its caller and is never queued: were its reply slot left waiting, every later
    reply on the shared connection would go to the caller before (one request's counters or
    token mark answered to another)."""
    assert await state.assign("k1", "A", 60) == "A"
    with pytest.raises((TypeError, UnicodeEncodeError)):
        await state._redis.call(b"SET", state._prefix + "k2", unpackable)
    page = asyncio.ensure_future(state.reserve([[capped_option(1)]], set(), 300))
    await asyncio.sleep(0)  # its walk waits in this turn's script call, not written yet
    with pytest.raises((TypeError, UnicodeEncodeError)):
        await state._redis.run_each(state._reserve, (state._prefix,), 0, unpackable)
    answers = await asyncio.gather(state.assign("k1", "X", 60), page, state.assign("k3", "D", 60))
    assert answers == ["A", [0], "D"] and not state.down


def script_calls(url: str) -> int:
    """Scripts Redis has run (EVALSHA and EVAL) so far."""
    with sync_redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def capped_option(n: int, key: str = "cap", cap: int = 3) -> Option:
    limit = Limit(key, cap, 1, "impression", 3600)
    return Option((f"c{n}",), (limit,), (limit,), f"page{n}")


async def test_the_pages_of_one_loop_turn_reserve_in_one_script_call_each_page_atomic(state, redis_url):
    """Pages that reach Redis in one turn of the loop share one script call (its fixed cost,
    Redis's and the worker's, paid once), and each page is still its own walk: ten pages
    competing for a cap of 3 reserve it exactly three times, in the order they were issued."""
    assert await state.reserve([[capped_option(0, "warm")]], set(), 300) == [0]  # the script is loaded
    before = script_calls(redis_url)
    picks = await asyncio.gather(*(state.reserve([[capped_option(n)]], set(), 300) for n in range(1, 11)))
    assert script_calls(redis_url) - before == 1
    assert picks == [[0]] * 3 + [[None]] * 7
    assert await state.get_many(["cap"]) == [3.0] and not state.down


async def test_a_page_whose_walk_fails_in_a_shared_script_call_fails_alone(state, redis_url):
    """A counter that holds no number fails its page's walk (a Lua error); the other pages of the
    same call are walked and reserved as if they had been alone."""
    with sync_redis.Redis.from_url(redis_url) as client:
        client.set(state._prefix + "broken", "not a number")
    broken = Option(("c99",), (Limit("broken", 5, 1, "impression", 60),), (), None)
    needs = [[capped_option(1)], [broken], [capped_option(2)], [capped_option(3, "other", 1)]]
    picks = await asyncio.gather(*(state.reserve([options], set(), 300) for options in needs))
    assert picks == [[0], [None], [0], [0]]
    with sync_redis.Redis.from_url(redis_url) as client:
        assert [client.get(state._prefix + key) for key in ("cap", "other")] == [b"2", b"1"]
    # its data, not Redis, failed: the store stays up (down, every page would go without its
    # capped campaigns until the watcher reconnects, and a page that keeps failing keeps it down)
    assert not state.down and await state.reserve([[capped_option(4)]], set(), 300) == [0]


async def test_a_page_whose_walk_fails_keeps_none_of_its_reservations(state, redis_url):
    """A page is reserved whole or not at all: its first need reserved, its second broke the walk
    (a counter that holds no number), so its answer is the degraded one and the first need's
    reservation is undone, not left holding the only place under the cap until its hold ends."""
    with sync_redis.Redis.from_url(redis_url) as client:
        client.set(state._prefix + "broken", "not a number")
    broken = Option(("c99",), (Limit("broken", 5, 1, "impression", 60),), (), None)
    spent = Option(("c98",), (), (Limit("spent", None, 1, "impression", 60),), "spent")  # counted, no limit
    with sync_redis.Redis.from_url(redis_url) as client:
        client.set(state._prefix + "spent", "also not a number")
    # the walk breaks reading a counter, or adding to one; the degraded answer serves what no
    # counter limits
    for failing, degraded in ((broken, [None, None]), (spent, [None, 0])):
        assert await state.reserve([[capped_option(1, cap=1)], [failing]], set(), 300) == degraded
        assert await state.get_many(["cap"]) == [0.0] and not state.down
    assert await state.reserve([[capped_option(2, cap=1)]], set(), 300) == [0]


async def test_pages_sharing_a_script_call_are_answered_after_redis_forgot_the_script(state, redis_url):
    assert await state.reserve([[capped_option(0, "warm")]], set(), 300) == [0]
    with sync_redis.Redis.from_url(redis_url) as client:
        client.script_flush()
    picks = await asyncio.gather(*(state.reserve([[capped_option(n, cap=2)]], set(), 300) for n in range(1, 5)))
    assert picks == [[0], [0], [None], [None]] and not state.down


async def test_a_cancelled_page_leaves_the_others_of_its_script_call_their_answers(state):
    assert await state.reserve([[capped_option(0, "warm")]], set(), 300) == [0]  # connected
    pages = [asyncio.create_task(state.reserve([[capped_option(n, cap=2)]], set(), 300)) for n in range(1, 5)]
    await asyncio.sleep(0)  # all four sent in one call, no reply read yet
    pages[0].cancel()
    picks = await asyncio.gather(*pages[1:])
    assert picks == [[0], [None], [None]] and not state.down  # the cancelled page reserved too


async def test_the_reservations_due_are_released_as_fast_as_pages_reserve_in_shared_calls(redis_url):
    """Each call releases a bounded batch of the reservations past their hold: with every page of a
    turn in one call, that bound must grow with the pages, or a turn of 300 pages reserves more than
    it releases, and unviewed answers (no pixel ever settles them) pile up until capped campaigns
    are refused for good."""
    now = [1000.0]
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:", clock=lambda: now[0])
    pages = 300
    try:
        reserved = await asyncio.gather(*(state.reserve([[capped_option(n, cap=pages)]], set(), 10)
                                          for n in range(pages)))
        assert reserved == [[0]] * pages
        now[0] += 60  # every hold has ended, no pixel came
        again = await asyncio.gather(*(state.reserve([[capped_option(pages + n, cap=pages)]], set(), 10)
                                       for n in range(pages)))
        assert again == [[0]] * pages and await state.get_many(["cap"]) == [float(pages)]
    finally:
        await state.close()


async def test_pages_of_one_call_with_different_clocks_see_every_hold_ended_by_the_latest(redis_url):
    """Redis runs the call at one moment, at or after the latest clock of its pages: a hold that
    has ended by then is released before any page is walked, not left to the next call (here the
    only place under a cap of 1 would otherwise stay refused to both pages)."""
    clocks = iter([1000.0, 1005.0, 1020.0])
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:", clock=lambda: next(clocks))
    try:
        assert await state.reserve([[capped_option(0, cap=1)]], set(), 10) == [0]  # held until 1010
        picks = await asyncio.gather(*(state.reserve([[capped_option(n, cap=1)]], set(), 10) for n in (1, 2)))
        assert picks == [[0], [None]] and await state.get_many(["cap"]) == [1.0]
    finally:
        await state.close()


async def test_a_shared_script_call_lost_with_its_connection_fails_each_page_and_leaves_nothing_queued(tmp_path):
    """Redis stops answering a shared call: every page of it gets its degraded answer within the
    wait (none hangs), nothing of the call stays queued, and once Redis is back the next call's
    replies are shared out one per page, in order."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    state = RedisState(f"redis://127.0.0.1:{port}/0", prefix="t:", wait=0.3)
    free = Option(("house",), (), (), None)
    try:
        assert await state.open()
        await state.restore(Replayed())
        assert await state.reserve([[capped_option(0, "warm")]], set(), 300) == [0]
        redis.send_signal(signal.SIGSTOP)
        picks = await asyncio.wait_for(asyncio.gather(  # the guard: 100 times the wait, against a hang
            *(state.reserve([[capped_option(n), free]], set(), 300) for n in range(1, 5))), 30)
        assert picks == [[1]] * 4 and state.down  # served what no counter limits
        pipe = state._redis
        assert not (pipe._pending or pipe._outgoing or pipe._batches)
        redis.send_signal(signal.SIGCONT)
        assert not await state.open()
        picks = await asyncio.gather(*(state.reserve([[capped_option(n, "fresh", 2), free]], set(), 300)
                                       for n in range(5, 9)))
        assert picks == [[0], [0], [1], [1]] and not state.down
    finally:
        redis.send_signal(signal.SIGCONT)
        redis.kill()
        redis.wait(timeout=10)
        await state.close()


async def test_a_shared_call_dropped_before_it_was_written_leaves_no_call_for_later_pages_to_join(state):
    """A page joining a call the lost connection failed unsent would wait for a reply that never
    comes: the pipe's next call opens a new connection and is sent on it."""
    from adserve.state.redis import _reserve_request

    pipe, shared = state._redis, (state._prefix,)
    assert await state.reserve([[capped_option(0, "warm")]], set(), 300) == [0]
    lost = pipe.run_each(state._reserve, shared, 0, _reserve_request([[capped_option(1)]], set(), 300))
    await pipe.close()  # in the same turn: the call was not written yet
    with pytest.raises(sync_redis.ConnectionError):
        await lost
    later = pipe.run_each(state._reserve, shared, 0, _reserve_request([[capped_option(2)]], set(), 300))
    assert await asyncio.wait_for(later, 30) == [1]  # its picks; the guard: a hang
