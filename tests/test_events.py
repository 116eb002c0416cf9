"""The event log: one line per event, rotated by day, torn lines skipped and reported."""

from __future__ import annotations

import asyncio
import datetime as dt

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
