"""The event log: one line per event, rotated by day, torn lines skipped and reported."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import socket
import time

import orjson
import pytest

from adserve import events
from adserve.events import EventLog, LogUnavailable, ReadReport, files, log_files, log_sizes, read_events
from adserve.server.app import SERVER, create_app

from .conftest import EXAMPLE_REQUEST
from .test_accounting import campaign_yaml
from .test_server import local, logged, post_slots

DAY = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()


def test_append_and_read_back(tmp_path):
    log = EventLog(tmp_path)
    log.append({"type": "decision", "user": "u1", "ts": DAY + 10},
               {"type": "click", "user": "u1", "ts": DAY + 11})
    log.close()
    events = list(read_events(log_files(tmp_path)))
    assert [e["type"] for e in events] == ["decision", "click"]


def test_events_without_a_time_are_stamped_with_the_clock_and_get_ids_in_order(tmp_path):
    """An event's own ``ts`` stays (a lone one reads no clock); the others of its write get the clock's."""
    log = EventLog(tmp_path, writer="w1", clock=lambda: DAY + 99)
    log.append({"type": "decision", "ts": DAY + 1})
    log.append({"type": "click", "ts": DAY + 2}, {"type": "impression"})
    log.append({"type": "click"})
    log.append({"type": "click", "ts": DAY + 3, "event_id": "stale"})  # a reconciled copy gets an id of its own
    log.close()
    written = list(read_events(log_files(tmp_path)))
    assert [e["ts"] for e in written] == [DAY + 1, DAY + 2, DAY + 99, DAY + 99, DAY + 3]
    prefix = f"w1:{int((DAY + 99) * 1000):x}:"
    assert [e["event_id"] for e in written] == [f"{prefix}{n}" for n in range(1, 6)]


def test_rotation_by_utc_day_and_date_range(tmp_path):
    log = EventLog(tmp_path, writer="r1")
    for day in range(3):
        log.append({"type": "decision", "ts": DAY + day * 86400})
    log.close()
    names = [p.name for p in log_files(tmp_path)]
    assert names == ["events-2026-11-25.r1.jsonl", "events-2026-11-26.r1.jsonl",
                     "events-2026-11-27.r1.jsonl"]
    chosen = log_files(tmp_path, dt.date(2026, 11, 26), dt.date(2026, 11, 26))
    assert [p.name for p in chosen] == ["events-2026-11-26.r1.jsonl"]


def test_torn_last_line_is_skipped_reported_and_not_glued(tmp_path):
    log = EventLog(tmp_path)
    log.append({"type": "click", "ts": DAY})
    log.close()
    path = log_files(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(b'{"type": "click", "ts": 17')  # the process died mid-write
    log = EventLog(tmp_path)
    log.append({"type": "impression", "ts": DAY + 1})
    log.close()
    report = ReadReport()
    events = list(read_events(log_files(tmp_path), report))
    assert [e["type"] for e in events] == ["click", "impression"]
    assert report.skipped == [(str(path), 2)]


class FsyncSpy:
    """Stands in for ``os.fsync``: records which files were flushed, and wakes a waiting test."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.synced: asyncio.Event | None = None

    def __call__(self, fd: int) -> None:
        self.fds.append(fd)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.synced.set)


@pytest.fixture
def fsyncs(monkeypatch) -> FsyncSpy:
    spy = FsyncSpy()
    monkeypatch.setattr(files.os, "fsync", spy)
    return spy


def test_sync_flushes_written_events_once(tmp_path, fsyncs):
    log = EventLog(tmp_path)
    log.sync()
    assert fsyncs.fds == []  # nothing written, nothing to flush
    log.append({"type": "click", "ts": DAY})
    fd = log._fd
    log.sync()
    log.sync()  # no new event since: no second fsync
    assert fsyncs.fds == [fd]
    log.append({"type": "click", "ts": DAY + 1})
    log.close()  # a clean stop flushes what is left
    assert fsyncs.fds == [fd, fd]


def test_a_day_file_is_flushed_before_it_is_closed(tmp_path, fsyncs):
    log = EventLog(tmp_path)
    log.append({"type": "click", "ts": DAY})
    first = log._fd
    log.append({"type": "click", "ts": DAY + 86400})
    assert fsyncs.fds == [first]
    log.close()


async def test_background_task_fsyncs_appended_events(tmp_path, fsyncs):
    """The batched fsync behind the durability promise actually runs, off the loop thread."""
    fsyncs.loop, fsyncs.synced = asyncio.get_running_loop(), asyncio.Event()
    log = EventLog(tmp_path)
    task = asyncio.create_task(log.sync_forever(interval=0.01))
    try:
        log.append({"type": "impression", "ts": DAY})
        await asyncio.wait_for(fsyncs.synced.wait(), timeout=10)  # a guard, not a measurement
        assert fsyncs.fds == [log._fd]
        fsyncs.synced.clear()
        log.append({"type": "click", "ts": DAY + 1})
        await asyncio.wait_for(fsyncs.synced.wait(), timeout=10)
        assert fsyncs.fds == [log._fd] * 2
    finally:
        task.cancel()
        log.close()


def test_reader_skips_and_reports_bad_lines_and_filters_types(tmp_path):
    first = tmp_path / "events-2026-11-25.a.jsonl"
    first.write_bytes(b'{"type": "click", "n": 1}\n{"type": \n[1, 2]\n\xff\xfe not utf-8\n'
                      b'{"type": "decision"}\n{"type": "click", "n": 2}\n')
    second = tmp_path / "events-2026-11-26.a.jsonl"
    second.write_bytes(b'{"type": "impression"}\n{"type": "click", "n": 3}\n')
    report = ReadReport()
    clicks = list(read_events(log_files(tmp_path), report, types=frozenset({"click"})))
    assert [e["n"] for e in clicks] == [1, 2, 3]
    assert (report.files, report.events) == (2, 3)
    assert report.skipped == [(str(first), 2), (str(first), 3), (str(first), 4)]
    everything = ReadReport()
    assert len(list(read_events(log_files(tmp_path), everything))) == 5 == everything.events


def test_one_file_per_day_opened_once(tmp_path, fsyncs):
    """Events of the open file's day, in any order, go to it without reopening (a reopen would
    fsync and close it mid-day); the default writer name is ``main``."""
    umask = os.umask(0o022)  # the usual umask, under which the file is created 0o644
    try:
        log = EventLog(tmp_path / "new" / "folder", clock=lambda: DAY + 60)
        log.append({"type": "click", "ts": DAY + 43200})
    finally:
        os.umask(umask)
    log.append({"type": "click", "ts": DAY}, {"type": "click", "ts": DAY + 86400})
    log.append({"type": "click", "ts": DAY + 86399.5})
    log.append({"type": "click"})  # stamped by the log's clock
    assert fsyncs.fds == []
    log.close()
    (path,) = log_files(tmp_path / "new" / "folder")
    assert path.name == "events-2026-11-25.main.jsonl" and path.stat().st_mode & 0o777 == 0o644
    assert [e["ts"] for e in read_events([path])] == [DAY + 43200, DAY, DAY + 86400, DAY + 86399.5, DAY + 60]


def test_a_closed_log_can_be_reopened_without_blank_or_glued_lines(tmp_path):
    log = EventLog(tmp_path)
    log.append({"type": "click", "ts": 0.5})
    fd = log._fd
    log.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed, not leaked
    log.append({"type": "click", "ts": 0.25})
    log.close()
    log = EventLog(tmp_path)
    log.append({"type": "impression", "ts": 0.75})
    log.close()
    lines = log_files(tmp_path)[0].read_bytes().split(b"\n")
    assert lines[-1] == b"" and [without_id(line) for line in lines[:-1]] == [
        {"type": "click", "ts": 0.5}, {"type": "click", "ts": 0.25}, {"type": "impression", "ts": 0.75}]


def without_id(line: bytes) -> dict:
    event = orjson.loads(line)
    assert event.pop("event_id")
    return event


def test_days_are_utc_days_whatever_the_local_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert events.day_of(DAY + 3600) == "2026-11-25"  # 20:00 the day before in New York
        log = EventLog(tmp_path, writer="w")
        log.append({"type": "click", "ts": DAY + 3600})
        log.close()
        assert [p.name for p in log_files(tmp_path)] == ["events-2026-11-25.w.jsonl"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_later_read_picks_up_where_the_sizes_were_taken(tmp_path):
    log = EventLog(tmp_path, writer="a")
    log.append({"type": "click", "n": 1, "ts": DAY})
    log.append({"type": "click", "n": 2, "ts": DAY + 86400})
    sizes = log_sizes(tmp_path)
    assert sizes == {p.name: p.stat().st_size for p in log_files(tmp_path)} and all(sizes.values())
    log.append({"type": "click", "n": 3, "ts": DAY + 86400})
    log.close()
    assert [e["n"] for e in read_events(log_files(tmp_path), skip=sizes)] == [3]
    assert [e["n"] for e in read_events(log_files(tmp_path))] == [1, 2, 3]


# -- failing loudly, recovering by itself ----------------------------------------------------------

def test_a_failed_day_switch_leaves_no_closed_descriptor_in_use(tmp_path):
    """The next day's file cannot be opened (a folder sits at its path): the write fails, and the
    descriptor number the old file had is never written to after it is given to someone else."""
    now = [DAY + 100]
    log = EventLog(tmp_path, clock=lambda: now[0])
    log.append({"type": "decision"})
    blocked = tmp_path / "events-2026-11-26.main.jsonl"
    blocked.mkdir()
    now[0] += 86400
    with pytest.raises(LogUnavailable):
        log.append({"type": "impression", "token": "lost"})
    mine, peer = socket.socketpair()  # takes the lowest free descriptor, as a client's socket would
    peer.setblocking(False)
    try:
        with pytest.raises(LogUnavailable):  # still failing, retrying the open each time
            log.append({"type": "impression", "token": "again"})
        with pytest.raises(BlockingIOError):
            peer.recv(4096)  # nothing was written into the connection
        assert log.failing and log.failures == 2
    finally:
        mine.close()
        peer.close()
    blocked.rmdir()
    log.append({"type": "impression", "token": "kept"})  # writable again: recovers by itself
    log.close()
    assert not log.failing
    assert [e.get("token") for e in read_events(log_files(tmp_path))] == [None, "kept"]


def test_a_write_error_mid_line_is_ended_before_the_next_event(tmp_path, monkeypatch):
    log = EventLog(tmp_path, clock=lambda: DAY)
    assert log.failing is False  # /healthz lists the log while this is true
    log.append({"type": "decision"})
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[:7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(LogUnavailable) as refused:
        log.append({"type": "impression", "token": "torn"})
    assert str(refused.value) == "event log: [Errno 28] No space left on device"  # the server logs why
    assert log.failing is True
    monkeypatch.setattr(os, "write", real_write)
    log.append({"type": "impression", "token": "whole"})
    log.close()
    report = ReadReport()
    assert [e.get("token") for e in read_events(log_files(tmp_path), report)] == [None, "whole"]
    assert len(report.skipped) == 1


async def test_a_full_disk_answers_503_and_the_retried_pixel_counts_once(client, workdir, clock):
    """The pixel's day file is /dev/full: 503 with Retry-After, /healthz degraded, a metric; the
    retry once the disk has room is logged once, counted and billable."""
    fill = (await post_slots(client, EXAMPLE_REQUEST))["s1"]
    clock.advance(days=1)
    day_file = workdir / "var" / "events" / f"events-{clock().date().isoformat()}.main.jsonl"
    day_file.symlink_to("/dev/full")
    for _ in range(2):
        refused = await client.get(local(fill["impression_url"]))
        assert refused.status == 503 and refused.headers["Retry-After"]
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["failing"] == ["event_log"]
    assert "adserve_log_failures_total 2.0" in await (await client.get("/metrics")).text()
    day_file.unlink()
    for _ in range(2):
        assert (await client.get(local(fill["impression_url"]))).status == 200
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    impressions = logged(workdir, "impression")
    assert [(e["counted"], e["billable"]) for e in impressions] == [(True, True), (False, False)]


async def test_a_cms_upsert_that_cannot_be_journaled_is_not_applied(client, workdir):
    journal = workdir / "var" / "events" / "catalog-updates.jsonl"
    journal.mkdir(parents=True)  # a folder in its place: no open for writing succeeds, even as root
    item = {"url": "https://news.example/fresh", "title": "Fresh", "section": "politics"}
    headers = {"Authorization": "Bearer cms-token-for-tests"}
    refused = await client.put("/v1/items/fresh-1", json=item, headers=headers)
    assert refused.status == 503 and refused.headers["Retry-After"]
    assert "fresh-1" not in client.server.app[SERVER].catalog.items
    journal.rmdir()
    assert (await client.put("/v1/items/fresh-1", json=item, headers=headers)).status == 200
    assert "fresh-1" in client.server.app[SERVER].catalog.items


PRICED = "campaigns:" + "".join(  # spend budgets: the charge is what they count
    campaign_yaml(cid, "sponsorship", price, "{metric: spend, total: 1000}")
    for cid, price in ((501, "{model: cpm, amount: 2.345}"), (502, "{model: cpc, amount: 0.123456}")))


async def test_billable_hits_carry_their_charge_in_micro_units(aiohttp_client, make_server, workdir):
    """Reports bill from the log: each billable hit says what it added to spend, exactly."""
    (workdir / "config" / "campaigns" / "priced.yaml").write_text(PRICED)
    client = await aiohttp_client(create_app(make_server()))
    body = {"page": {"item_id": "a1", "section": "world"}, "user": {"id": "r1"}, "device": "desktop",
            "slots": [{"id": f"s{n}", "type": "display", "sizes": ["300x250"]} for n in range(2)]}
    fills = (await post_slots(client, body)).values()
    assert {fill["campaign_id"] for fill in fills} == {501, 502}
    for fill in fills:
        for _ in range(2):  # the repeat is not billable and carries no charge
            assert (await client.get(local(fill["impression_url"]))).status == 200
            assert (await client.get(local(fill["click_url"]), allow_redirects=False)).status == 302
    expected = {("impression", 501): 2345, ("click", 501): 0, ("impression", 502): 0, ("click", 502): 123456}
    for kind in ("impression", "click"):
        hits = logged(workdir, kind)
        assert [e["billable"] for e in hits] == [True, False, True, False]
        for e in hits:
            if e["billable"]:
                assert type(e["charge"]) is int and e["charge"] == expected[(kind, e["campaign"])]
            else:
                assert "charge" not in e


def test_a_torn_line_that_cannot_be_ended_fails_the_write_and_leaks_nothing(tmp_path, monkeypatch):
    """Disk full while ending the next day's torn line: the write is refused like any other, the
    file just opened is closed again, and the next write, once there is space, goes through."""
    log = EventLog(tmp_path, clock=lambda: DAY)
    log.append({"type": "decision"})
    next_day = tmp_path / "events-2026-11-26.main.jsonl"
    next_day.write_bytes(b'{"type":"click","ts":')  # a crash mid-line
    real_open, real_write, opened = os.open, os.write, []

    def spied_open(*args):
        opened.append(real_open(*args))
        return opened[-1]

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "open", spied_open)
    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(LogUnavailable):
        log.append({"type": "impression", "token": "lost", "ts": DAY + 86400})
    with pytest.raises(OSError):
        os.fstat(opened[0])  # closed, not leaked
    monkeypatch.setattr(os, "write", real_write)
    log.append({"type": "impression", "token": "kept", "ts": DAY + 86400})
    log.close()
    report = ReadReport()
    assert [e.get("token") for e in read_events([next_day], report)] == ["kept"]
    assert report.skipped == [(str(next_day), 1)]


def test_the_batched_fsync_runs_within_a_fraction_of_a_second(tmp_path, monkeypatch):
    """The durability promise: an acknowledged event is on disk a fraction of a second later."""
    waits = []

    class Stop(Exception):
        pass

    async def sleep(seconds):
        waits.append(seconds)
        raise Stop

    monkeypatch.setattr(files.asyncio, "sleep", sleep)
    with pytest.raises(Stop):
        EventLog(tmp_path).sync_forever().send(None)
    assert 0 < waits[0] < 1


async def test_a_failed_background_fsync_makes_the_next_write_reopen_the_file(tmp_path, monkeypatch):
    """An fsync error may have lost written pages: the log reports itself failing, and the next
    write reopens the file (ending a torn line) instead of trusting the descriptor."""
    def broken_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    log = EventLog(tmp_path)
    log.append({"type": "click", "ts": DAY})
    task = asyncio.create_task(log.sync_forever(interval=0.001))

    async def failing():
        while not log.failing:
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(failing(), timeout=10)  # a guard against a hang, not a measurement
    finally:
        task.cancel()
    real_open, opened = os.open, []

    def spied_open(*args):
        opened.append(args[0])
        return real_open(*args)

    monkeypatch.setattr(os, "open", spied_open)
    log.append({"type": "click", "ts": DAY + 1})
    assert opened == [tmp_path / "events-2026-11-25.main.jsonl"] and log.failing is False
    log.close()
    assert [e["ts"] for e in read_events(log_files(tmp_path))] == [DAY, DAY + 1]
