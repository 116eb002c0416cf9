"""The event log: one line per event, rotated by day, torn lines skipped and reported."""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket

import pytest

from adserve.events import EventLog, LogUnavailable, ReadReport, log_files, read_events
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
    log.append({"type": "decision"})
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[:7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(LogUnavailable):
        log.append({"type": "impression", "token": "torn"})
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
