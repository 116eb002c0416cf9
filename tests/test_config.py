"""Campaign YAML: every error kind is reported with its file, line and field, all in one run."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal

import jsonschema_rs
import pytest
import yaml

from adserve.cli import main
from adserve.config import load_config
from adserve.schema import json_schema

from .conftest import NOON_ISH, REPO

GOOD_CAMPAIGN = """\
campaigns:
  - id: 500
    name: Test campaign
    advertiser: Tester
    flight: {start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z}
    price: {model: cpm, amount: 5}
    creatives:
      - id: t-300
        size: 300x250
        landing_url: https://tester.example/
        variants: [{id: A, image_url: /static/x.svg}]
"""


def problems_for(workdir, text: str, name: str = "extra.yaml"):
    (workdir / "config" / "campaigns" / name).write_text(textwrap.dedent(text))
    return load_config(workdir / "config", now=NOON_ISH)


def only(result, fragment: str):
    found = [e for e in result.errors + result.warnings if fragment in e.message]
    assert len(found) == 1, [str(e) for e in result.errors + result.warnings]
    return found[0]


def test_demo_config_is_clean_and_rich():
    result = load_config(REPO / "config", now=NOON_ISH)
    assert result.ok and not result.errors and not result.warnings
    config = result.config
    assert len(config.campaigns) >= 8
    by_id = {c.id: c for c in config.campaigns}
    variants = {v.id for v in by_id[12174].creatives[0].variants}
    assert variants == {"A", "B"} and by_id[12174].creatives[0].platform == "WEB"
    sizes = {cr.size for c in config.campaigns for cr in c.creatives}
    assert {"300x250", "728x90", "320x50", "native"} <= sizes
    assert any(c.tier == "house" for c in config.campaigns)
    assert {"you-might-like", "related-articles", "special-offer", "take-a-look",
            "dont-miss-this", "sidebar-300x250"} <= set(config.placements)


def test_good_extra_file_loads(workdir):
    assert problems_for(workdir, GOOD_CAMPAIGN).ok


def test_unknown_key_names_line_and_suggests(workdir):
    result = problems_for(workdir, GOOD_CAMPAIGN + "    targetting: {sections: [politics]}\n")
    error = only(result, "unknown key")
    assert error.file.endswith("extra.yaml") and error.line == 12 and error.column == 5
    assert error.path == "campaigns[0].targetting"
    assert "did you mean 'targeting'" in error.message
    assert not result.ok


@pytest.mark.parametrize("old, new, path, fragment, line", [
    ("amount: 5", "amount: -5", "campaigns[0].price.amount", "at least 0", 6),
    ("model: cpm", "model: cmp", "campaigns[0].price.model", "did you mean 'cpm'", 6),
    ("size: 300x250", "size: 300x251", "campaigns[0].creatives[0].size", "unknown size", 9),
    ("end: 2027-01-01T00:00:00Z", "end: 2025-01-01T00:00:00Z", "campaigns[0].flight.end",
     "ends before it starts", 5),
    ("end: 2027-01-01T00:00:00Z", "end: next tuesday", "campaigns[0].flight.end",
     "not an ISO 8601", 5),
    ("start: 2026-01-01T00:00:00Z", "start: 2026-01-01", "campaigns[0].flight.start",
     "no timezone", 5),
    ("id: 500", "id: five hundred", "campaigns[0].id", "expected an integer", 2),
    ("    advertiser: Tester\n", "", "campaigns[0].advertiser", "missing required field", 2),
])
def test_each_error_kind_with_its_line(workdir, old, new, path, fragment, line):
    assert old in GOOD_CAMPAIGN
    result = problems_for(workdir, GOOD_CAMPAIGN.replace(old, new))
    error = only(result, fragment)
    assert (error.path, error.line) == (path, line)
    assert not result.ok


def test_negative_budget_and_budget_without_caps(workdir):
    text = GOOD_CAMPAIGN + "    budget: {metric: spend, daily: -1}\n"
    assert only(problems_for(workdir, text), "at least 0").path == "campaigns[0].budget.daily"
    text = GOOD_CAMPAIGN + "    budget: {metric: spend}\n"
    assert only(problems_for(workdir, text), "needs total, daily").line == 12


def test_duplicate_ids_across_files(workdir):
    result = problems_for(workdir, GOOD_CAMPAIGN.replace("id: 500", "id: 12174"))
    error = only(result, "duplicate campaign id 12174")
    assert error.file.endswith("extra.yaml") and error.line == 2
    assert "display.yaml" in error.message


def test_every_error_of_a_run_is_listed(workdir):
    (workdir / "config" / "campaigns" / "empty.yaml").write_text("")
    (workdir / "config" / "campaigns" / "broken.yaml").write_text("campaigns: [\n  {id: 1\n")
    result = problems_for(workdir, GOOD_CAMPAIGN.replace("amount: 5", "amount: -5")
                          .replace("size: 300x250", "size: 1x1"))
    messages = [str(e) for e in result.errors]
    assert any("empty.yaml" in m and "file is empty" in m for m in messages)
    assert any("broken.yaml:" in m and "YAML syntax" in m for m in messages)
    assert any("extra.yaml:6" in m and "at least 0" in m for m in messages)
    assert any("extra.yaml:9" in m and "unknown size" in m for m in messages)


def test_past_flight_is_only_a_warning(workdir):
    text = GOOD_CAMPAIGN.replace("2027-01-01", "2026-02-01")
    result = problems_for(workdir, text)
    assert result.ok
    assert only(result, "already over").severity == "warning"


def test_country_no_stays_norway(workdir):
    result = problems_for(workdir, GOOD_CAMPAIGN + "    targeting: {countries: [NO, SE]}\n")
    assert result.ok
    campaign = next(c for c in result.config.campaigns if c.id == 500)
    assert campaign.targeting.countries == ["NO", "SE"]


def test_alias_bomb_is_refused_not_expanded(workdir):
    many = lambda name: "[" + ", ".join([f"*{name}"] * 2000) + "]"
    bomb = (
        "v: &v {id: A, image_url: /x.svg}\n"
        f"cr: &cr {{id: c, size: 300x250, landing_url: 'https://x.example', variants: {many('v')}}}\n"
        "camp: &camp {id: 1, name: n, advertiser: a, price: {model: cpm, amount: 1},\n"
        "  flight: {start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z},\n"
        f"  creatives: {many('cr')}}}\n"
        f"campaigns: {many('camp')}\n")  # 8 billion nodes once expanded
    result = problems_for(workdir, bomb)
    assert not result.ok
    assert any("alias bomb" in e.message for e in result.errors)


@pytest.mark.parametrize("text, path, line, column", [
    (GOOD_CAMPAIGN + "campaigns: []\n", "campaigns", 12, 1),
    (GOOD_CAMPAIGN + "    price: {model: cpc, amount: 1}\n", "campaigns[0].price", 12, 5),
    (GOOD_CAMPAIGN.replace("amount: 5", "amount: 5, amount: 0"), "campaigns[0].price.amount", 6, 36),
    (GOOD_CAMPAIGN.replace("{id: A,", "{id: A, id: B,"), "campaigns[0].creatives[0].variants[0].id",
     11, 28),
], ids=["file", "campaign", "price", "variant"])
def test_duplicate_keys_are_errors_at_every_depth(workdir, text, path, line, column):
    """A second `price:` must not silently win over the first."""
    error = only(problems_for(workdir, text), "duplicate key")
    assert error.file.endswith("extra.yaml")
    assert (error.path, error.line, error.column) == (path, line, column)


def test_unknown_placement_reference(workdir):
    result = problems_for(workdir, GOOD_CAMPAIGN + "    targeting: {placements: [sidebar-99]}\n")
    assert only(result, "unknown placement").path == "campaigns[0].targeting.placements"


def test_check_command_exit_codes(workdir, capsys):
    assert main(["check", str(workdir / "config")]) == 0
    (workdir / "config" / "campaigns" / "extra.yaml").write_text(
        GOOD_CAMPAIGN.replace("targeting", "x") + "    targetting: {}\n")
    assert main(["check", str(workdir / "config")]) == 1
    out = capsys.readouterr().out
    assert "extra.yaml:12:5: error: campaigns[0].targetting: unknown key" in out


def test_shipped_schema_is_current_and_accepts_demo_files():
    shipped = json.loads((REPO / "config" / "adserve.schema.json").read_text())
    assert shipped == json.loads(json.dumps(json_schema()))
    validator = jsonschema_rs.validator_for(shipped)
    for path in sorted((REPO / "config").rglob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema="), path
        document = json.loads(json.dumps(yaml.safe_load(text), default=str))
        assert validator.is_valid(document), (path, [str(e) for e in validator.iter_errors(document)])
    assert not validator.is_valid({"campaigns": [{"id": 1, "targetting": {}}]})


@pytest.mark.parametrize("old, new, path", [
    ("landing_url: https://tester.example/", 'landing_url: "https://tester.example/\\n"',
     "campaigns[0].creatives[0].landing_url"),
    ("id: t-300", 'id: "t-300\\n"', "campaigns[0].creatives[0].id"),
    ("variants: [{id: A,", 'variants: [{id: "A\\n",', "campaigns[0].creatives[0].variants[0].id"),
])
def test_patterns_refuse_a_trailing_newline(workdir, old, new, path):
    """``$`` also matches before a final newline; a pattern must cover the whole value."""
    assert old in GOOD_CAMPAIGN
    result = problems_for(workdir, GOOD_CAMPAIGN.replace(old, new))
    assert only(result, "does not match").path == path


def test_serving_outside_demo_mode_needs_a_public_url(workdir, monkeypatch, capsys):
    """Tracking URLs would otherwise copy whatever Host header a request sends."""
    monkeypatch.setenv("ADSERVE_SECRET", "x" * 32)
    monkeypatch.setattr("adserve.server.app.AdServer", lambda *a, **k: pytest.fail("started without public_url"))
    assert main(["serve", "--config", str(workdir / "config")]) == 1
    error = capsys.readouterr().err
    assert "server.public_url" in error and error.count("\n") == 1


def test_weight_zero_is_a_warning_that_points_to_paused(workdir):
    result = problems_for(workdir, GOOD_CAMPAIGN + "    weight: 0\n")
    assert result.ok and only(result, "status: paused").path == "campaigns[0].weight"
    assert problems_for(workdir, GOOD_CAMPAIGN + "    weight: 0\n    status: paused\n").warnings == []
    silent = GOOD_CAMPAIGN.replace("        size: 300x250\n", "        size: 300x250\n        weight: 0\n")
    assert only(problems_for(workdir, silent), "never serves").path == "campaigns[0].creatives"


def test_money_is_read_exactly_from_the_yaml_text(workdir):
    text = GOOD_CAMPAIGN.replace("amount: 5", "amount: 0.1") + "    budget: {metric: spend, total: 1.10}\n"
    campaign = next(c for c in problems_for(workdir, text).config.campaigns if c.id == 500)
    assert campaign.price.amount == Decimal("0.1") and campaign.budget.total == Decimal("1.10")


@pytest.mark.parametrize("replace, add, path", [
    ("amount: 1.0e+25", "", "campaigns[0].price.amount"),  # 28 digits of micro-units: "% 1" raised
    ("model: cpc, amount: 9007199254.740993", "", "campaigns[0].price.amount"),  # 2**53 + 1 micro-units
    ("amount: 5", "    budget: {metric: impressions, total: 1.0e+30}\n", "campaigns[0].budget.total"),
    ("amount: 5", "    budget: {metric: spend, daily: 1.0e+22}\n", "campaigns[0].budget.daily"),
])
def test_money_too_large_to_count_exactly_is_a_config_error(workdir, replace, add, path):
    """Counters hold whole numbers a float keeps exactly (the embedded store's): a charge or a
    limit past 2**53 units could not be counted, and one past the decimal context's 28 digits
    made the whole-number check itself raise."""
    text = GOOD_CAMPAIGN.replace("model: cpm, amount: 5", "model: cpm, " + replace) + add
    if "cpc" in replace:
        text = text.replace("model: cpm, model: cpc,", "model: cpc,")
    problem = only(problems_for(workdir, text), "at most")
    assert problem.severity == "error" and problem.path == path and problem.line is not None


@pytest.mark.parametrize("replace, add, path, fragment", [
    ("amount: 0.0005", "", "campaigns[0].price.amount", "micro-unit"),          # 0.5 micro a view
    ("model: cpc, amount: 0.0000001", "", "campaigns[0].price.amount", "micro-unit"),
    ("amount: 5", "    budget: {metric: spend, daily: 1.0000001}\n", "campaigns[0].budget.daily",
     "micro-unit"),
    ("amount: 5", "    budget: {metric: impressions, total: 2.5}\n", "campaigns[0].budget.total",
     "whole number"),
    ("amount: .nan", "", "campaigns[0].price.amount", "number"),
])
def test_money_that_is_not_whole_micro_units_is_a_config_error(workdir, replace, add, path, fragment):
    text = GOOD_CAMPAIGN.replace("model: cpm, amount: 5", "model: cpm, " + replace) + add
    if "cpc" in replace:
        text = text.replace("model: cpm, model: cpc,", "model: cpc,")
    problem = only(problems_for(workdir, text), fragment)
    assert problem.severity == "error" and problem.path == path and problem.line is not None
