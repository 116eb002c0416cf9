"""Restarts: lifetime counters come back from the counter checkpoint plus the log after it."""

from __future__ import annotations

import shutil

import pytest

from adserve.server.app import SERVER, create_app

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
