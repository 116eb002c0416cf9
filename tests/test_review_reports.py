"""Hostile and broken event logs and rollups: the report reads what it can and never crashes."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import threading

import numpy as np
import orjson
import pytest

from adserve.cli import DEMO_CONFIG
from adserve.config import load_config
from adserve.reports.aggregate import report
from adserve.reports.output import render as render_rows
from adserve.reports import rollup
from adserve.reports.rollup import rollups
from adserve.server import report_page
from adserve.server.app import create_app
from adserve.server.report_page import render

from .test_reports import hit, write

CONFIG = load_config(DEMO_CONFIG).config
NOW = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)


def day_file(folder, data: bytes, name: str = "events-2026-11-20.main.jsonl"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize("torn_key, counted", [("charge", 2), ("campaign", 1), ("counted", 1),
                                               ("creative", 1), ("variant", 1)])
def test_a_line_torn_after_a_key_does_not_read_the_next_line_as_its_value(tmp_path, torn_key, counted):
    """A line torn after ``"charge":`` still counted (its ``counted`` came before): what it holds."""
    whole = orjson.dumps(hit())
    torn = whole.split(f'"{torn_key}":'.encode())[0] + f'"{torn_key}":'.encode()
    day_file(tmp_path, torn + b"\n" + whole + b"\n")
    rows = report(rollups(tmp_path), "variant")
    assert [(r["campaign_id"], r["creative_id"], r["variant"], r["impressions"]) for r in rows
            if r["impressions"]] == [(12174, "cr-a", "A", counted)]
    assert not [r for r in rows if "\n" in f'{r["campaign_id"]}{r["creative_id"]}{r["variant"]}']


@pytest.mark.parametrize("charge", ['"abc"', "true", "1.5", "-", "[1]", "{}"])
def test_a_charge_that_is_not_an_integer_is_priced_like_a_line_without_one(tmp_path, charge):
    line = orjson.dumps(hit(charge=7)).replace(b'"charge":7', f'"charge":{charge}'.encode())
    day_file(tmp_path, line + b"\n" + orjson.dumps(hit()) + b"\n")
    [row] = report(rollups(tmp_path), "campaign")
    assert row["impressions"] == 2 and row["spend_micros"] == 12_000  # no config: no price for it


@pytest.mark.parametrize("by", ["campaign", "creative", "variant", "placement", "strategy", "day"])
def test_ids_that_are_not_utf8_or_not_numbers_are_shown_not_fatal(tmp_path, by):
    """Ids in the log are whatever a writer (or a hand edit) left: bytes that are not UTF-8, a
    campaign that is text or a list. Every grouping reports them, and the /report page too."""
    bad = orjson.dumps(hit(placement="p", strategy="s", sponsored=True, creative="cr-a"))
    lines = [bad.replace(b'"cr-a"', b'"cr-\xff\xfe"').replace(b'"p"', b'"p\xe9"').replace(b'"s"', b'"\xc3"'),
             orjson.dumps(hit(campaign="abc")), orjson.dumps(hit(campaign=[1, 2])),
             orjson.dumps({"type": "decision", "slots": [{"slot": "s", "placement": "p", "campaign": 12174}]}
                          ).replace(b'"p"', b'"p\xe9"')]
    day_file(tmp_path, b"\n".join(lines) + b"\n")
    rows = report(rollups(tmp_path), by, CONFIG)
    assert sum(r["impressions"] for r in rows) == (1 if by in ("strategy", "placement") else 3)
    page = render(tmp_path, CONFIG, None, NOW)
    assert "campaign abc" in page and "campaign [1" in page


def planted_rollups(folder) -> list:
    """Files an attacker (or a full disk) can leave where a day's rollup is kept, each stamped
    as if built from the day's log so only their content can give them away."""
    log = write(folder, "2026-11-20", [hit()])
    stamp = np.array([f"v{rollup.VERSION}", f"{log.name} {log.stat().st_size} {log.stat().st_mtime_ns}"])
    good = {f"{name}.{column}": values for name in ("hits", "slots", "reach")
            for column, values in getattr(rollup.build(None, [log]), name).items()}
    bomb = io.BytesIO()
    np.savez_compressed(bomb, source=stamp, **{**good, "hits.events": np.zeros(3 << 20, dtype=np.int64)})
    return [b"PK\x03\x04 not a zip", b"",
            lambda f: np.savez(f, source=stamp),  # no tables
            lambda f: np.savez(f, source=stamp, **{**good, "hits.kind": np.array([1.5])}),  # wrong type
            lambda f: np.savez(f, source=stamp, **{**good, "hits.events": np.arange(5)}),  # wrong length
            lambda f: np.savez(f, source=stamp, **good, extra=np.array([{"a": 1}], dtype=object)),  # pickle
            bomb.getvalue()]  # compressed: small on disk, large in memory


@pytest.mark.parametrize("case", range(7))
def test_a_corrupt_or_planted_rollup_is_built_again_from_the_log(tmp_path, case):
    planted = planted_rollups(tmp_path)[case]
    stored = tmp_path / rollup.FOLDER / "2026-11-20.npz"
    stored.parent.mkdir(exist_ok=True)
    if callable(planted):
        with open(stored, "wb") as f:
            planted(f)
    else:
        stored.write_bytes(planted)
    assert [(r["campaign_id"], r["impressions"]) for r in report(rollups(tmp_path), "campaign")] == [(12174, 1)]
    with np.load(stored, allow_pickle=False) as rebuilt:
        assert rebuilt["hits.events"].tolist() == [1]


@pytest.mark.parametrize("formula", ["=HYPERLINK(1)", "+1+cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted_as_text(formula):
    """Campaign names are marketer input and ids come from the log; CSV opens in a spreadsheet."""
    rows = [{"campaign_id": -5, "campaign": formula, "creative_id": formula, "spend": -1.5}]
    [parsed] = csv.DictReader(io.StringIO(render_rows(rows, "creative", "csv"), newline=""))
    assert parsed == {"campaign_id": "-5", "campaign": "'" + formula, "creative_id": "'" + formula,
                      "spend": "-1.5"}  # numbers stay numbers


@pytest.mark.parametrize("name", ["events-notaday.jsonl", "events-.jsonl", "events-2026-13-01.main.jsonl"])
def test_a_file_whose_name_carries_no_day_is_left_out_not_fatal(tmp_path, name):
    write(tmp_path, "2026-11-20", [hit()])
    day_file(tmp_path, orjson.dumps(hit()) + b"\n", name)
    assert [(r["campaign_id"], r["impressions"]) for r in report(rollups(tmp_path), "campaign")] == [(12174, 1)]


@pytest.mark.parametrize("clicks", [(2, 1), (3, 0), (5, 5)])
def test_variants_with_more_clicks_than_impressions_get_a_verdict(tmp_path, clicks):
    """A blocked pixel still lets its click through: counted clicks can outnumber impressions."""
    write(tmp_path, "2026-11-20", [hit(variant=v) for v in ("A", "B")]
          + [hit("click", variant=v) for v, n in zip(("A", "B"), clicks) for _ in range(n)])
    rows = report(rollups(tmp_path), "variant", CONFIG)
    assert [r["clicks"] for r in rows] == list(clicks)
    assert all(r["verdict"] in ("better", "worse", "undecided") and 0 <= r["prob_best"] <= 1 for r in rows)
    assert "A/B variants" in render(tmp_path, CONFIG, 12174, NOW)


def test_a_campaign_with_more_clicks_than_impressions_has_an_interval(tmp_path):
    write(tmp_path, "2026-11-20", [hit()] + [hit("click")] * 3)
    [row] = report(rollups(tmp_path), "campaign", CONFIG)
    assert (row["impressions"], row["clicks"], row["ctr_high"]) == (1, 3, 1.0) and 0 < row["ctr_low"] < 1


def test_guard_ids_from_the_log_reach_the_page_escaped(tmp_path):
    """Guard (held on review): creative, variant and placement ids in the log are shown escaped."""
    evil = '<img src=x onerror=alert(1)>'
    write(tmp_path, "2026-11-20", [hit(creative=evil[:20], variant=v, placement=evil) for v in (evil[:16], "B")]
          + [{"type": "decision", "slots": [{"slot": "s", "placement": evil, "campaign": 12174}]}])
    page = render(tmp_path, CONFIG, 12174, NOW) + render(tmp_path, CONFIG, None, NOW)
    assert "<img" not in page and "&lt;img" in page


async def test_concurrent_report_requests_read_the_log_one_at_a_time(aiohttp_client, make_server, monkeypatch):
    """Each /report may rebuild the open day (or every day, cold): N requests at once must not
    make N rebuilds run side by side on the serving machine's cores."""
    monkeypatch.setenv("ADSERVE_REPORT_TOKEN", "t")
    release, reading, peak = threading.Event(), [], []

    def blocked_rollups(folder):
        reading.append(folder)
        peak.append(len(reading))
        release.wait(timeout=5)
        reading.pop()
        return []

    monkeypatch.setattr(report_page, "rollups", blocked_rollups)
    client = await aiohttp_client(create_app(make_server()))
    pending = [asyncio.ensure_future(client.get("/report", headers={"Authorization": "Bearer t"}))
               for _ in range(4)]
    while not peak:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # room for the others to start reading, were they allowed to
    release.set()
    assert [r.status for r in await asyncio.gather(*pending)] == [200] * 4
    assert max(peak) == 1 and len(peak) == 4


def test_guard_keys_inside_string_values_are_not_read_as_fields(tmp_path):
    """Guard (held on review): a page URL or id holding '"campaign":999' is text, not a field."""
    planted = 'https://x/?a","campaign":999,"counted":true,"creative":"y'
    write(tmp_path, "2026-11-20", [hit(page=planted, campaign=12174, counted=False), hit(slot=planted)])
    rows = report(rollups(tmp_path), "creative")
    assert [(r["campaign_id"], r["creative_id"], r["impressions"]) for r in rows] == [(12174, "cr-a", 1)]
