"""The event log: one line per event, rotated by day, torn lines skipped and reported."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import pytest

from adserve import events

from adserve.events import EventLog, ReadReport, log_files, read_events

DAY = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()


def test_append_and_read_back(tmp_path):
    log = EventLog(tmp_path)
    log.append({"type": "decision", "user": "u1", "ts": DAY + 10},
               {"type": "click", "user": "u1", "ts": DAY + 11})
    log.close()
    events = list(read_events(log_files(tmp_path)))
    assert [e["type"] for e in events] == ["decision", "click"]


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
    monkeypatch.setattr(events.os, "fsync", spy)
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
    assert log_files(tmp_path)[0].read_bytes() == (b'{"type":"click","ts":0.5}\n{"type":"click","ts":0.25}\n'
                                                   b'{"type":"impression","ts":0.75}\n')


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
