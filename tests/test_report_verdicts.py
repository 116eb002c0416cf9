"""A/B verdicts on variant rows: the fixed split is judged by its p-value, Thompson allocation by
the posterior (a fixed-sample p-value is not valid when the split followed the data)."""

from __future__ import annotations

import copy

import pytest

from adserve.abtest import Arm, allocation, two_proportion_p
from adserve.config import load_config
from adserve.reports.aggregate import report
from adserve.reports.output import render
from adserve.reports.rollup import rollups

from .conftest import DEMO_CONFIG
from .test_reports import hit, write

CREATIVE = "12174-300x250"  # the demo's creative with variants A and B


def variant_log(folder, counts: dict[str, tuple[int, int]]) -> None:
    events = []
    for variant, (shown, clicked) in counts.items():
        events += [hit(creative=CREATIVE, variant=variant, event_id=f"{variant}i{n}") for n in range(shown)]
        events += [hit("click", creative=CREATIVE, variant=variant, charge=0, event_id=f"{variant}c{n}")
                   for n in range(clicked)]
    write(folder, "2026-11-20", events)


def rows_by_variant(folder, config) -> dict[str, dict]:
    return {row["variant"]: row for row in report(rollups(folder), "variant", config)}


def test_a_fixed_split_is_judged_by_its_p_value(tmp_path):
    config = load_config(DEMO_CONFIG).config
    variant_log(tmp_path / "ev", {"A": (2000, 20), "B": (2000, 45)})
    rows = rows_by_variant(tmp_path / "ev", config)
    assert rows["B"]["p_value"] == pytest.approx(two_proportion_p(45, 2000, 20, 2000))
    assert (rows["A"]["verdict"], rows["B"]["verdict"]) == ("worse", "better")
    assert rows["A"]["prob_best"] + rows["B"]["prob_best"] == pytest.approx(1.0)
    assert rows["A"]["weight"] == rows["B"]["weight"] == 0.5 and rows["A"]["allocation"] == "fixed"
    assert rows["A"]["needed_impressions"] is None  # told apart
    small = tmp_path / "small"
    variant_log(small, {"A": (300, 3), "B": (300, 5)})
    rows = rows_by_variant(small, config)
    assert rows["A"]["verdict"] == "undecided" and rows["A"]["needed_impressions"] > 300
    table = render(list(rows.values()), "variant", "table")
    assert f"undecided (need {rows['A']['needed_impressions']:,} each)" in table


def test_thompson_verdicts_come_from_the_posterior_and_show_the_weights_in_use(tmp_path):
    config = copy.deepcopy(load_config(DEMO_CONFIG).config)
    harbor = next(c for c in config.campaigns if c.id == 12174)
    harbor.variant_optimization, harbor.min_share = "thompson", 0.1
    # B was shown more because it was winning
    variant_log(tmp_path / "ev", {"A": (400, 2), "B": (3000, 60)})
    rows = rows_by_variant(tmp_path / "ev", config)
    expected = allocation([Arm(400, 2), Arm(3000, 60)], 0.1)
    assert [rows["A"]["weight"], rows["B"]["weight"]] == pytest.approx(expected)
    assert rows["B"]["allocation"] == "thompson" and rows["B"]["prob_best"] > 0.95
    assert (rows["A"]["verdict"], rows["B"]["verdict"]) == ("undecided", "best")
    assert rows["A"]["p_value"] < 0.05  # a fixed split would call A worse: not valid here
