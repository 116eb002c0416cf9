"""The offline replay of Thompson allocation on a logged fixed split: it finds a planted better
variant and estimates a gain, estimates none when the variants are equal, and skips creatives
whose logged split is not known."""

from __future__ import annotations

import copy
import json
import random

import pytest

from adserve.config import load_config
from adserve.reports.thompson_replay import replay_thompson

from .conftest import DEMO_CONFIG
from .test_cli import adserve
from .test_reports import hit, write
from .test_report_verdicts import CREATIVE


def logged_run(folder, ctr: dict[str, float], weights: dict[str, float], n: int, seed: int) -> None:
    """A fixed split logged over ``n`` seconds: one impression a second, clicked at its variant's CTR."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        variant = rng.choices(list(weights), weights=list(weights.values()))[0]
        base = {"creative": CREATIVE, "variant": variant, "token": f"t{i}", "ts": 1_795_000_000.0 + i}
        events.append(hit(**base))
        if rng.random() < ctr[variant]:
            events.append(hit("click", charge=0, **base))
    write(folder, "2026-11-20", events)


def demo(weights=(1.0, 1.0), thompson=False):
    config = copy.deepcopy(load_config(DEMO_CONFIG).config)
    harbor = next(c for c in config.campaigns if c.id == 12174)
    for variant, weight in zip(harbor.creatives[0].variants, weights):
        variant.weight = weight
    if thompson:
        harbor.variant_optimization = "thompson"
    return config


def test_replay_finds_the_planted_better_variant_and_a_gain(tmp_path):
    logged_run(tmp_path, {"A": 0.02, "B": 0.06}, {"A": 1, "B": 1}, 20_000, seed=1)
    [row] = replay_thompson(tmp_path, demo())
    assert row["weights_logged"] == {"A": 0.5, "B": 0.5}
    assert row["weights_thompson"]["B"] > 0.9 and row["weights_thompson"]["A"] == pytest.approx(0.05, abs=1e-3)
    assert row["ctr"] == pytest.approx(0.04, abs=0.005)  # the logged 50/50 split
    assert 0.05 < row["thompson_ctr"] < 0.065 and row["gain_low"] > 0
    assert row["gain"] == pytest.approx(row["thompson_clicks"] - row["clicks"])


def test_an_uneven_logged_split_is_corrected_for(tmp_path):
    logged_run(tmp_path, {"A": 0.02, "B": 0.06}, {"A": 4, "B": 1}, 30_000, seed=2)
    [row] = replay_thompson(tmp_path, demo(weights=(4.0, 1.0)))
    assert row["kept"] < row["impressions"] / 2  # c = 0.2 of the log at most
    assert row["weights_thompson"]["B"] > 0.9 and 0.045 < row["thompson_ctr"] < 0.07


def test_equal_variants_gain_nothing_beyond_noise(tmp_path):
    logged_run(tmp_path, {"A": 0.04, "B": 0.04}, {"A": 1, "B": 1}, 20_000, seed=3)
    [row] = replay_thompson(tmp_path, demo())
    assert row["gain_low"] < 0 < row["gain_high"]


def test_a_split_logged_under_thompson_is_not_replayed(tmp_path):
    logged_run(tmp_path, {"A": 0.02, "B": 0.06}, {"A": 1, "B": 1}, 2_000, seed=4)
    assert replay_thompson(tmp_path, demo(thompson=True)) == []
    assert replay_thompson(tmp_path, demo(), campaign=12180) == []  # one variant: nothing to replay


def test_report_command_replays_and_shows_the_weights(tmp_path):
    logged_run(tmp_path / "events", {"A": 0.02, "B": 0.06}, {"A": 1, "B": 1}, 3_000, seed=5)
    args = ("report", "--config", str(DEMO_CONFIG), "--events", str(tmp_path / "events"), "--replay-thompson")
    table = adserve(*args, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "weights_thompson" in table.stdout and "A:50% B:50%" in table.stdout
    [row] = json.loads(adserve(*args, "--format", "json", cwd=tmp_path).stdout)
    assert row["creative_id"] == CREATIVE and row["impressions"] == 3_000
