"""Restarts: lifetime counters come back from the counter checkpoint plus the log after it."""

from __future__ import annotations

import asyncio
import gc
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import adserve
from adserve import checkpoint
from adserve.ledger import Limit
from adserve.server.app import SERVER, create_app
from adserve.state import Option

from .test_server import local, post_slots

LONG_FLIGHT = """\
campaigns:
  - id: 777
    name: Long flight, lifetime budget
    advertiser: Longrun
    flight: {start: 2026-11-20T00:00:00Z, end: 2027-03-01T00:00:00Z}
    tier: sponsorship
    price: {model: cpm, amount: 10}
    budget: {metric: impressions, total: 100}
    pacing: asap
    creatives:
      - {id: long-777, size: 300x250, landing_url: "https://longrun.example/",
         variants: [{id: A, image_url: /static/x.svg}]}
  - id: 778
    name: Long flight, one view per reader
    advertiser: Longcap
    flight: {start: 2026-11-20T00:00:00Z, end: 2027-03-01T00:00:00Z}
    tier: sponsorship
    price: {model: cpm, amount: 10}
    frequency_cap: {count: 1, period: flight}
    creatives:
      - {id: long-778, size: 300x250, landing_url: "https://longcap.example/",
         variants: [{id: A, image_url: /static/x.svg}]}
"""


def page(reader: str) -> dict:
    return {"page": {"item_id": "a1", "section": "world"}, "user": {"id": reader}, "device": "desktop",
            "slots": [{"id": f"s{n}", "type": "display", "sizes": ["300x250"]} for n in range(2)]}


async def view(client, reader: str) -> set[int]:
    """One page view with both pixels fired: the campaigns the reader saw."""
    seen = set()
    for fill in (await post_slots(client, page(reader))).values():
        if fill["fill"]:
            assert (await client.get(local(fill["impression_url"]))).status == 200
            seen.add(fill["campaign_id"])
    return seen


@pytest.mark.parametrize("restart", ["clean", "crash after a checkpoint", "no checkpoint",
                                     "unreadable checkpoint"])
async def test_a_restart_on_day_8_keeps_lifetime_budgets_and_flight_caps(
        aiohttp_client, make_server, workdir, clock, restart):
    (workdir / "config" / "campaigns" / "long.yaml").write_text(LONG_FLIGHT)
    first = await aiohttp_client(create_app(make_server()))
    server = first.server.app[SERVER]
    checkpoint = server.replay.checkpoint
    for n in range(100):
        assert await view(first, f"r{n}") == {777, 778}
        if n == 59 and restart == "crash after a checkpoint":
            server.replay.save()
            shutil.copy(checkpoint, workdir / "at-60")
    await first.close()
    if restart == "crash after a checkpoint":
        shutil.copy(workdir / "at-60", checkpoint)  # the last 40 views are only in the log
    elif restart == "no checkpoint":
        checkpoint.unlink()  # a log written before checkpoints existed: read it whole, once
    elif restart == "unreadable checkpoint":
        checkpoint.write_bytes(checkpoint.read_bytes()[:-40])  # torn: read the whole log instead
    clock.advance(days=8)
    second = await aiohttp_client(create_app(make_server()))
    assert await view(second, "r0") & {777, 778} == set()  # budget 100/100, cap 1/1
    assert await view(second, "newcomer") & {777, 778} == {778}


async def test_pacing_learns_the_sites_hourly_traffic_from_the_log(aiohttp_client, make_server, clock):
    from adserve.events import EventLog

    log = EventLog("var/events")
    start = int(clock().timestamp()) // 3600 - 48
    for hour in range(start, start + 48):  # two days; 19:00 UTC busiest
        views = 40 if hour % 24 == 19 else 10
        log.append(*({"ts": hour * 3600 + n, "type": "decision", "user": f"r{n}", "slots": []}
                     for n in range(views)))
    log.close()
    client = await aiohttp_client(create_app(make_server()))
    hourly = client.server.app[SERVER].runtime.decider.ledger.hourly  # New York: 19:00 UTC is 14:00
    assert hourly[14] == 4 * hourly[3]


async def test_forgetting_a_reader_erases_their_caps_from_the_checkpoint(
        aiohttp_client, make_server, workdir):
    from adserve import retention

    (workdir / "config" / "campaigns" / "long.yaml").write_text(LONG_FLIGHT)
    first = await aiohttp_client(create_app(make_server()))
    checkpoint = first.server.app[SERVER].replay.checkpoint
    assert await view(first, "reader-gone") == {777, 778}
    assert await view(first, "reader-kept") == {777, 778}
    await first.close()  # the server is stopped, then the reader is forgotten
    assert b"reader-gone" in checkpoint.read_bytes()
    erased = retention.forget("reader-gone", workdir / "var" / "events", workdir / "var" / "model.npz")
    assert erased.checkpointed == ["c778:cap:reader-gone:all"]
    assert b"reader-gone" not in checkpoint.read_bytes()
    second = await aiohttp_client(create_app(make_server()))
    assert await view(second, "reader-gone") == {777, 778}  # their flight cap is gone
    assert await view(second, "reader-kept") & {777, 778} == {777}  # others' caps and the budget stay


@pytest.mark.parametrize("pixel", ["before the restart", "after the restart"])
async def test_a_reservation_open_at_a_checkpoint_is_neither_kept_nor_counted_twice(
        aiohttp_client, make_server, workdir, clock, pixel):
    """The checkpoint is taken between a decision (which reserves) and its pixel. Reservations
    are not saved: a pixel logged after the checkpoint is replayed once; one that comes after
    the restart is billed as a late pixel, once."""
    (workdir / "config" / "campaigns" / "long.yaml").write_text(LONG_FLIGHT)
    first = await aiohttp_client(create_app(make_server()))
    server = first.server.app[SERVER]
    fills = [fill for fill in (await post_slots(first, page("r0"))).values() if fill["fill"]]
    assert {fill["campaign_id"] for fill in fills} == {777, 778}
    server.replay.save()
    shutil.copy(server.replay.checkpoint, workdir / "reserved")
    if pixel == "before the restart":
        for fill in fills:
            assert (await first.get(local(fill["impression_url"]))).status == 200
    await first.close()
    shutil.copy(workdir / "reserved", server.replay.checkpoint)  # a crash: only the log is newer
    second = await aiohttp_client(create_app(make_server()))
    if pixel == "after the restart":
        for fill in fills:
            assert (await second.get(local(fill["impression_url"]))).status == 200
    state = second.server.app[SERVER].state
    assert await state.get_many(["c777:total:impressions"]) == [1]
    assert sum(await state.get_many([key for key in state.snapshot() if key.startswith("c778:cap:")])) == 1


async def test_a_hit_billed_before_a_checkpoint_and_logged_after_it_is_charged_once(
        aiohttp_client, make_server, workdir, clock):
    """The pixel's first write fails after it was billed; a checkpoint is taken; the retry is
    logged (billable, as billed before). A crash then replays the retry without charging again."""
    (workdir / "config" / "campaigns" / "long.yaml").write_text(LONG_FLIGHT)
    first = await aiohttp_client(create_app(make_server()))
    server = first.server.app[SERVER]
    fills = [fill for fill in (await post_slots(first, page("r0"))).values() if fill["fill"]]
    clock.advance(days=1)  # the pixels go to a new day's file, which is /dev/full
    day_file = workdir / "var" / "events" / f"events-{clock().date().isoformat()}.main.jsonl"
    day_file.symlink_to("/dev/full")
    for fill in fills:
        assert (await first.get(local(fill["impression_url"]))).status == 503
    day_file.unlink()
    server.replay.save()
    shutil.copy(server.replay.checkpoint, workdir / "billed")
    for fill in fills:
        assert (await first.get(local(fill["impression_url"]))).status == 200
    await first.close()
    shutil.copy(workdir / "billed", server.replay.checkpoint)
    second = await aiohttp_client(create_app(make_server()))
    state = second.server.app[SERVER].state
    assert await state.get_many(["c777:total:impressions"]) == [1]
    assert sum(await state.get_many([key for key in state.snapshot() if key.startswith("c778:cap:")])) == 1



class InlineExecutor(ThreadPoolExecutor):
    """Runs what the server hands to a worker thread at once, on the calling thread."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


async def longest_loop_step(awaitable) -> int:
    """The most lines of adserve's own code run between two returns to the event loop while
    ``awaitable`` is awaited, what it gives worker threads included (run inline here): Python in a
    thread holds the interpreter lock too, and the loop waits for it. A measure of stalls that no
    machine load can change."""
    asyncio.get_running_loop().set_default_executor(InlineExecutor())
    package = str(Path(adserve.__file__).parent)
    steps, depth = [0], 0

    def trace(frame, event, _arg):
        nonlocal depth
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "call":  # also a coroutine resumed by the loop
            steps.append(0) if depth == 0 else None
            depth += 1
        elif event == "return":  # also a coroutine suspended
            depth -= 1
        elif event == "line":
            steps[-1] += 1
        return trace
    previous = sys.gettrace()  # a coverage run's tracer comes back afterwards
    sys.settrace(trace)
    try:
        await awaitable
    finally:
        sys.settrace(previous)
    return max(steps)


async def test_a_checkpoint_stalls_the_event_loop_no_longer_however_much_the_store_holds(make_server):
    """A busy server holds five minutes of reservations and a day of reader caps: one pass over
    them stalled every answer for 350-800 ms once a minute (in a worker thread too, which holds
    the interpreter lock). The loop takes the moment at once, then the holds are taken out and
    the lines encoded a slice per step; only the file's writing is left to a thread."""
    longest = []
    for size in (1000, 3000):  # one slice of holds, three slices
        server = make_server()
        for n in range(size):
            cap = Limit(f"c1:cap:reader-{n}", 3, 1, "impression", 3600)
            await server.state.reserve([[Option(("c1",), (cap,), (cap,), f"p{n}.1")]], set(), 300)
        longest.append(await longest_loop_step(server.replay.write_checkpoint()))
        _header, saved = checkpoint.read(server.replay.checkpoint)
        assert len(saved) == size and all(value == 0 for _key, (value, _expires) in saved)  # holds left out
    assert longest[0] == longest[1]


async def test_no_collection_walks_a_checkpoints_copy_of_the_store(make_server, monkeypatch):
    """The copy is one container holding every key: each collection while it lived walked all
    of it (20-40 ms steps of the loop, once a minute)."""
    server = make_server()
    for n in range(3000):  # its holds come out as 3,000 new tuples: collections would run
        cap = Limit(f"c1:cap:reader-{n}", 3, 1, "impression", 3600)
        await server.state.reserve([[Option(("c1",), (cap,), (cap,), f"p{n}.1")]], set(), 300)
    collections, lifetime = [], []  # collections run so far, when the copy is made and last read
    capture, encoded = server.state.capture, checkpoint.encoded

    def last_read(*args):
        yield from encoded(*args)
        lifetime.append(len(collections))
    monkeypatch.setattr(server.state, "capture", lambda: lifetime.append(len(collections)) or capture())
    monkeypatch.setattr(checkpoint, "encoded", last_read)

    def count(phase, _info):
        collections.append(phase) if phase == "start" else None
    gc.callbacks.append(count)
    try:
        await server.replay.write_checkpoint()
    finally:
        gc.callbacks.remove(count)
    assert len(lifetime) == 2 and lifetime[0] == lifetime[1] and gc.isenabled()
