"""Hostile and broken event logs and rollups: the report reads what it can and never crashes."""

from __future__ import annotations

import orjson
import pytest

from adserve.reports.aggregate import report
from adserve.reports.rollup import rollups

from .test_reports import hit, write


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
