"""Delivery reports: what the log carries for them, rollups per UTC day, and the report command.

The reports' counts must be exactly what counted toward caps and budgets: a live run fires
pixels and clicks (repeats, bots, over-limit and late ones) and the report is compared with the
log's own ``counted``/``billable`` verdicts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from adserve.cli import DEMO_CONFIG
from adserve.config import load_config
from adserve.ledger import spend_micros
from adserve.reports import rollup
from adserve.reports.aggregate import delivery_series, fill_series, report, wilson
from adserve.reports.rollup import rollups
from adserve.retention import forget
from adserve.server.app import create_app

from .test_accounting import LIMITED, limited_book, page
from .test_cli import adserve, fails
from .test_server import local, logged, post_slots

BUILD = rollup.build

WIDGET_PAGE = {"page": {"item_id": "iran-push-us-forces-iraq", "section": "politics"},
               "user": {"id": "reader-7"}, "device": "desktop",
               "slots": [{"id": "el-1", "placement": "special-offer"},
                         {"id": "el-2", "placement": "you-might-like"},
                         {"id": "el-3", "type": "display", "sizes": ["728x90"]}]}


async def test_events_carry_placement_strategy_and_sponsorship(client, workdir):
    """Reports group by placement (not the page's element id) and by widget strategy."""
    slots = await post_slots(client, WIDGET_PAGE)
    decision = logged(workdir, "decision")[-1]
    assert [s.get("placement") for s in decision["slots"]] == ["special-offer", "you-might-like", None]
    widget = slots["el-2"]
    native = next(item for item in widget["items"] if item["sponsored"])
    organic = next(item for item in widget["items"] if not item["sponsored"])
    for url in (slots["el-1"]["impression_url"], widget["impression_url"], native["impression_url"],
                slots["el-3"]["impression_url"], organic["click_url"], native["click_url"]):
        await client.get(local(url), allow_redirects=False)
    hits = logged(workdir, "impression") + logged(workdir, "click")
    seen = [(e["type"], e["placement"], e.get("strategy"), e.get("sponsored")) for e in hits]
    strategy = widget["strategy"]
    assert seen == [("impression", "special-offer", None, None),
                    ("impression", "you-might-like", strategy, False),
                    ("impression", "you-might-like", strategy, True),
                    ("impression", None, None, None),
                    ("click", "you-might-like", strategy, False),
                    ("click", "you-might-like", strategy, True)]


async def test_report_counts_exactly_what_counted_toward_caps_and_budgets(aiohttp_client, make_server,
                                                                            workdir, clock):
    """Repeats, a bot, a late pixel over the budget and clicks: the report bills what the ledger did."""
    limited_book(workdir, cap=2, total=5, server="  reservation_seconds: 5\n")
    server = make_server()
    client = await aiohttp_client(create_app(server))
    views = [await post_slots(client, page(reader)) for reader in ("r0", "r0", "r0", "r1", "r1", "r2")]
    limited = [slots["s1"] for slots in views if slots["s1"].get("campaign_id") == LIMITED]
    assert len(limited) == 5  # r0's third view is over its cap
    for fill in limited[:4]:
        for _ in range(2):  # the repeat counts toward nothing
            assert (await client.get(local(fill["impression_url"]))).status == 200
        await client.get(local(fill["click_url"]), allow_redirects=False)
    await client.get(local(limited[0]["click_url"]), allow_redirects=False)  # a repeated click
    clock.advance(seconds=6)  # r2's answer is released unviewed; r3 takes the last impression
    fresh = (await post_slots(client, page("r3")))["s1"]
    assert fresh["campaign_id"] == LIMITED
    assert (await client.get(local(fresh["impression_url"]))).status == 200
    assert (await client.get(local(limited[4]["impression_url"]))).status == 200  # late: over budget
    house = [slots["s1"] for slots in views if slots["s1"].get("campaign_id") != LIMITED]
    await client.get(local(house[0]["impression_url"]), headers={"User-Agent": "Googlebot/2.1"})
    for fill in house:
        await client.get(local(fill["impression_url"]))
    hits = logged(workdir, "impression") + logged(workdir, "click")
    assert [e["billable"] for e in hits if e["campaign"] == LIMITED and e["counted"]].count(False) == 1
    expected = Counter((e["campaign"], e["creative"], e["variant"], e["type"]) for e in hits
                       if e["counted"] and e["billable"] is not False)
    config = server.runtime.config
    rows = report(rollups(workdir / "var" / "events"), "variant", config)
    assert {(r["campaign_id"], r["creative_id"], r["variant"], kind): r[f"{kind}s"] for r in rows
            for kind in ("impression", "click") if r[f"{kind}s"]} == expected
    [campaign] = report(rollups(workdir / "var" / "events"), "campaign", config, campaign=LIMITED)
    assert (campaign["impressions"], campaign["clicks"], campaign["over_limit"]) == (5, 4, 1)
    assert (campaign["budget_used"], campaign["budget_left"], campaign["answers"]) == (5, 0, 6)
    assert campaign["spend_micros"] == 5 * 10_000 and campaign["spend"] == 0.05
    assert campaign["readers"] == 3 and campaign["frequency"]["2"] == 2  # r0 and r1 twice, r3 once


def write(folder: Path, day: str, events: list[dict], writer: str = "main", compact: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"events-{day}.{writer}.jsonl"
    with open(path, "ab") as f:
        f.writelines((orjson.dumps(e) if compact else json.dumps(e).encode()) + b"\n" for e in events)
    return path


def hit(kind: str = "impression", campaign: int | None = 12174, **fields) -> dict:
    return {"ts": 1_795_000_000.0, "type": kind, "user": "u1", "campaign": campaign, "creative": "cr-a",
            "variant": "A", "bot": False, "counted": True, "billable": True, "charge": 12_000, **fields}


def totals(folder: Path, by: str = "campaign", **options) -> dict:
    return {row.get("campaign_id", row.get(by)): (row["impressions"], row["clicks"])
            for row in report(rollups(folder), by, **options)}


def test_a_changed_closed_day_is_rolled_up_again_and_others_are_not(tmp_path, monkeypatch):
    events = tmp_path / "events"
    closed = write(events, "2026-11-20", [hit(), hit("click", charge=0)])
    write(events, "2026-11-21", [hit()])
    assert totals(events) == {12174: (2, 1)}
    built = []
    monkeypatch.setattr(rollup, "build", lambda day, paths: built.append(day) or BUILD(day, paths))
    assert totals(events) == {12174: (2, 1)} and built == []  # both read from .rollups
    write(events, "2026-11-20", [hit(reconciled=True, hit_ts=1_794_990_000.0)])  # a late reconciled hit
    write(events, "2026-11-21", [hit()], writer="spool")  # a shipped spool: a new file of a day
    assert totals(events) == {12174: (4, 1)}
    assert built == [dt.date(2026, 11, 20), dt.date(2026, 11, 21)]
    size = closed.stat().st_size
    forget("u1", events, tmp_path / "model.npz")  # erasure rewrites in place, same size
    assert closed.stat().st_size == size and not (events / ".rollups" / "2026-11-20.npz").exists()
    built.clear()
    assert totals(events) == {12174: (4, 1)} and built == [dt.date(2026, 11, 20), dt.date(2026, 11, 21)]


def test_repeated_event_ids_bots_repeats_and_over_limit_hits_count_once_or_not_at_all(tmp_path):
    events = tmp_path / "events"
    write(events, "2026-11-20", [hit(event_id="e1"), hit(counted=False), hit(bot=True, counted=False),
                                 hit(billable=False), hit(counted=None, billable=None), hit(event_id="e2")])
    write(events, "2026-11-20", [hit(event_id="e1")], writer="spool")  # shipped twice
    [row] = report(rollups(events), "campaign")
    assert (row["impressions"], row["over_limit"], row["spend_micros"]) == (2, 1, 24_000)


def test_an_older_log_reports_what_it_can(tmp_path):
    """Lines from before placement, strategy, billable, charge and event ids, written by json.dumps:
    counted hits count, and are priced from the config's price model."""
    config = load_config(DEMO_CONFIG).config
    events = tmp_path / "events"
    old = {"ts": 1_795_000_000.0, "type": "impression", "user": "u1", "page": "a", "slot": "s1",
           "campaign": 12174, "creative": "harbor-300x250", "variant": "B", "bot": False, "counted": True}
    decision = {"ts": 1_795_000_000.0, "type": "decision", "user": "u1", "page": "a",
                "slots": [{"slot": "s1", "campaign": 12174, "creative": "harbor-300x250", "variant": "B"},
                          {"slot": "s2", "fill": False}, {"slot": "w", "strategy": "personal",
                                                          "items": ["a", "b"], "sponsored": [90001]}]}
    write(events, "2026-11-20", [decision, old, {**old, "counted": False}, {**old, "type": "click"}],
          compact=False)
    [row] = report(rollups(events), "variant", config, campaign=12174)
    price = spend_micros(next(c for c in config.campaigns if c.id == 12174), "impression")
    assert (row["answers"], row["impressions"], row["clicks"], row["spend_micros"]) == (1, 1, 1, price)
    [placement] = report(rollups(events), "placement")
    assert (placement["placement"], placement["requests"], placement["filled"]) == (None, 3, 2)
    assert fill_series(rollups(events)) == [{"day": "2026-11-20", "placement": None, "requests": 3,
                                             "filled": 2, "fill_rate": 2 / 3}]
    natives = report(rollups(events), "campaign", config, campaign=90001)
    assert [r["answers"] for r in natives] == [1]


def test_widget_hits_report_ctr_per_strategy_and_sponsored(tmp_path):
    events = tmp_path / "events"
    widget = {"campaign": None, "billable": None, "charge": None, "placement": "you-might-like"}
    write(events, "2026-11-20", [hit(strategy="related", sponsored=False, **widget)] * 4
          + [hit("click", strategy="related", sponsored=False, **widget)]
          + [hit(strategy="related", sponsored=True, campaign=90001)] * 2)
    rows = report(rollups(events), "strategy")
    assert [(r["strategy"], r["sponsored"], r["impressions"], r["clicks"]) for r in rows] == [
        ("related", False, 4, 1), ("related", True, 2, 0)]
    assert rows[0]["ctr"] == 0.25 and rows[0]["ctr_low"] < 0.25 < rows[0]["ctr_high"]


def test_wilson_interval():
    assert wilson(0, 0) == (None, None)
    low, high = wilson(0, 10)
    assert low == 0 and 0.27 < high < 0.28  # the textbook 0.2775
    low, high = wilson(50, 100)
    assert abs(low - 0.4038) < 1e-3 and abs(high - 0.5962) < 1e-3


def test_report_command_prints_json_rows(tmp_path):
    events = tmp_path / "events"
    write(events, "2026-11-20", [hit(), hit("click", charge=0)])
    write(events, "2026-11-22", [hit()])
    result = adserve("report", "--config", str(DEMO_CONFIG), "--events", str(events), "--format", "json",
                     "--by", "variant", "--until", "2026-11-21", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert {key: row[key] for key in ("campaign_id", "creative_id", "variant", "impressions", "clicks",
                                      "spend")} == {"campaign_id": 12174, "creative_id": "cr-a",
                                                    "variant": "A", "impressions": 1, "clicks": 1,
                                                    "spend": 0.012}
    assert row["ctr"] == 1.0 and row["ctr_low"] < 1.0 == row["ctr_high"]
    table = adserve("report", "--config", str(DEMO_CONFIG), "--events", str(events), cwd=tmp_path)
    assert table.returncode == 0 and "Harbor Bank" in table.stdout


@pytest.mark.parametrize("args, words", [
    (("--campaign", "424242"), ("unknown campaign 424242",)),
    (("--since", "2026-02-30"), ("--since", "YYYY-MM-DD")),
    (("--since", "2026-11-21", "--until", "2026-11-20"), ("after --until",)),
    (("--events", "missing"), ("missing does not exist",)),
    (("--config", "nowhere"), ("config folder 'nowhere' not found",)),
    (("--by", "advertiser"), ("--by", "invalid choice")),
    (("--format", "xml"), ("--format",)),
])
def test_report_command_refuses_bad_arguments_in_one_line(tmp_path, args, words):
    write(tmp_path / "events", "2026-11-20", [hit()])
    given = ("--events", str(tmp_path / "events"), *args) if "--events" not in args else args
    given = given if "--config" in args else ("--config", str(DEMO_CONFIG), *given)
    fails(adserve("report", *given, cwd=tmp_path), 2, *words)


def test_delivery_series_follow_the_even_pacing_line_per_day(tmp_path):
    """Spend budgets deliver in currency; the planned line grows by what each day of the flight adds."""
    config = load_config(DEMO_CONFIG).config
    events = tmp_path / "events"
    write(events, "2026-11-20", [hit()] * 3)
    write(events, "2026-11-21", [hit()] * 2 + [hit(campaign=12180, charge=5_000)])
    now = dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone.utc)
    rows = delivery_series(rollups(events), config, campaign=12174, now=now)
    assert [(r["day"], r["impressions"], r["delivered"], r["delivered_total"]) for r in rows] == [
        ("2026-11-20", 3, 3, 3), ("2026-11-21", 2, 2, 5)]
    assert 0 < rows[1]["planned"] < rows[0]["planned"]  # half of the 21st is due at noon
    assert rows[1]["planned_total"] == pytest.approx(rows[0]["planned_total"] + rows[1]["planned"])
    [later] = delivery_series(rollups(events), config, campaign=12180, since=dt.date(2026, 11, 21), now=now)
    assert (later["delivered"], later["spend"]) == (0.005, 0.005)
