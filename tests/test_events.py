"""The event log: one line per event, rotated by day, torn lines skipped and reported."""

from __future__ import annotations

import datetime as dt

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
