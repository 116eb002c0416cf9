"""Training's own steps: which days it reads, the top-N tables, who gets one, and what it costs."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from adserve.cli import DEMO_CONFIG, main
from adserve.events import EventLog, log_files
from adserve.model import Recs
from adserve.recs import tables
from adserve.recs import tune as tune_module
from adserve.recs.artifact import ModelArtifact
from adserve.recs.evaluate import _bootstrap_means, _interval_holds_zero, evaluate, split_time, table
from adserve.recs.matrix import read_interactions
from adserve.recs.recommender import LoadedModel
from adserve.recs.simulate import SimulationSpec, simulate
from adserve.recs.tables import item_table, top_n, user_table
from adserve.recs.train import EmptyLog, read_log, train

RECS = Recs(factors=4, iterations=3, view_weight=0.0)
DAY = 86400.0
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp()


def one_file(path, events) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def click(day: float, user: str, item: str) -> dict:
    return {"ts": START + day * DAY, "type": "click", "user": user, "item": item}


def brute_force(queries, targets, banned, n) -> np.ndarray:
    scores = queries @ targets.T
    scores[banned.toarray() > 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.where(np.isfinite(np.take_along_axis(scores, order, axis=1)), order, -1)


def test_top_n_matches_a_full_sort_across_blocks(monkeypatch):
    monkeypatch.setattr(tables, "BLOCK_SCORES", 7 * 30)  # 7 rows a block: several blocks, a ragged last
    rng = np.random.default_rng(3)
    queries, targets = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    mask = rng.random((40, 30)) < 0.3
    mask[0] = True  # a query with everything banned gets nothing
    banned = csr_matrix(mask, dtype=np.float32)
    for n in (1, 6, 29, 30, 35):
        table = top_n(queries, targets, banned, n)
        assert table.shape == (40, n)
        expected = brute_force(queries.astype(np.float32), targets.astype(np.float32), banned, min(n, 30))
        assert (table[:, :min(n, 30)] == expected).all(), n
        assert (table[0] == -1).all() and (table[:, 30:] == -1).all()


def test_item_table_never_lists_an_item_as_its_own_neighbour():
    factors = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)
    table = item_table(factors, 5)
    assert not (table == np.arange(12)[:, None]).any()
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    assert (table == brute_force(unit, unit, csr_matrix(np.eye(12)), 5)).all()


def test_user_table_fills_only_the_readers_asked_for():
    rng = np.random.default_rng(2)
    seen = csr_matrix(rng.random((6, 8)) < 0.3, dtype=np.float32)
    table = user_table(rng.normal(size=(6, 3)), rng.normal(size=(8, 3)), seen, np.array([1, 4]), 3)
    assert (table[[0, 2, 3, 5]] == -1).all() and (table[[1, 4]] >= 0).any()


def test_since_and_until_select_rows_of_a_single_file(tmp_path):
    log = tmp_path / "converted.jsonl"
    one_file(log, [click(d, f"u{d}", "a") for d in range(5)])
    data, _ = read_log(log, RECS, dt.date(2026, 11, 2), dt.date(2026, 11, 3))
    assert sorted(data.users.tolist()) == ["u1", "u2"]
    with pytest.raises(EmptyLog, match="between"):
        read_log(log, RECS, dt.date(2027, 1, 1))


def test_tables_only_for_recent_readers_and_the_others_scored_from_their_factors(tmp_path):
    events = [click(0, "gone", i) for i in ("a", "b", "c")]  # then nothing for 20 days
    events += [click(20 + n / 10, f"r{n % 3}", "abcdefghijkl"[n % 12]) for n in range(30)]
    one_file(tmp_path / "log.jsonl", events)
    recs = Recs(factors=4, iterations=3, max_age_hours=24 * 7, top_n=6)
    artifact = train(tmp_path / "log.jsonl", recs, tmp_path / "model.npz")
    users = artifact.user_ids.tolist()
    assert (artifact.user_top[users.index("gone")] == -1).all()
    assert all(artifact.user_top[users.index(f"r{n}"), 0] >= 0 for n in range(3))
    assert artifact.meta["data"]["table_readers"] == 3
    assert set(artifact.meta["steps"]) == {"matrix", "fit", "tables", "write"}
    assert artifact.meta["offline"] == {}  # training is one fit: evaluating is its own step
    model = LoadedModel(artifact, recs)
    assert model.personal("gone", ())  # a returning reader still gets personal items


def test_items_only_shown_stay_recommendable(tmp_path):
    """With impression_weight > 0 a widget's items enter the matrix, but being shown an item is
    not having read it: it must stay in the reader's table (a later click on it can score)."""
    events = [{"ts": START, "type": "impression", "user": "r", "page": "p", "items": ["x"]},
              click(0.1, "r", "a")]
    events += [click(0.2 + n / 100, f"o{n}", item) for n in range(8) for item in ("a", "x")]
    events += [click(0.3 + n / 100, f"q{n}", item) for n in range(8) for item in ("b", "c")]
    one_file(tmp_path / "log.jsonl", events)
    recs = Recs(factors=4, iterations=5, impression_weight=0.2, top_n=6)
    artifact = train(tmp_path / "log.jsonl", recs, tmp_path / "model.npz")
    row = artifact.user_top[artifact.user_ids.tolist().index("r")].tolist()
    items = artifact.item_ids.tolist()
    assert items.index("x") in row and items.index("a") not in row


def test_evaluation_does_not_count_shown_items_as_read(tmp_path):
    """A reader shown the hottest article (never reading it) who reads it after the cutoff is a hit."""
    events = [click(day / 10, f"o{n}", "hot") for n in range(6) for day in range(8)]
    events += [{"ts": START + 0.5 * DAY, "type": "impression", "user": "r", "page": "p", "items": ["hot"]},
               click(0.6, "r", "cold"), click(0.95, "r", "hot")]
    one_file(tmp_path / "log.jsonl", events)
    recs = Recs(factors=2, iterations=2, impression_weight=0.2)
    data, _ = read_log(tmp_path / "log.jsonl", recs)
    scores = {s.strategy: s for s in evaluate(data, recs, k=1, test_share=0.2)}
    assert scores["popular"].readers == 1 and scores["popular"].precision == 1.0


def test_identical_strategies_cannot_be_told_apart_and_distant_ones_can():
    values = np.random.default_rng(4).random((1, 300)).repeat(2, axis=0)
    values = np.vstack([values, values[0] + 0.2])
    means = _bootstrap_means(values, seed=1)
    assert _interval_holds_zero(means[0] - means[1]) and not _interval_holds_zero(means[0] - means[2])


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim") / "events"
    log = EventLog(folder, writer="simulated")
    simulate(log, SimulationSpec(users=400, days=10))
    log.close()
    return folder


def test_evaluation_reports_intervals_readers_and_baselines(small_log):
    recs = Recs(factors=16, iterations=10)
    scores = evaluate(read_interactions(log_files(small_log), recs), recs, k=6)
    named = {s.strategy: s for s in scores}
    assert set(named) == {"personal", "related", "popular", "cf-order", "item-item"}
    readers = {s.readers for s in scores}
    assert len(readers) == 1 and readers.pop() > 100
    for s in scores:
        low, high = s.precision_interval
        assert 0 <= low <= s.precision <= high and high - low < 0.1
    assert "popular" not in named["personal"].cannot_tell_from  # planted tastes: CF is far ahead
    for s in scores:  # "cannot be told apart" is symmetric
        assert all(s.strategy in named[other].cannot_tell_from for other in s.cannot_tell_from)
    assert "95% interval" in table(scores, 6)


def test_tune_never_looks_at_the_test_window(small_log, monkeypatch):
    monkeypatch.setattr(tune_module, "REFITS", {"regularization": (0.01, 0.5), "weighting": ("bm25",)})
    recs = Recs(factors=8, iterations=5)
    data = read_interactions(log_files(small_log), recs)
    first = tune_module.tune(data, recs)
    test_window = data.ts >= split_time(data, 0.2)
    scrambled = data.select(np.ones(len(data), dtype=bool))
    scrambled.item_codes[test_window] = np.random.default_rng(5).permutation(data.item_codes[test_window])
    second = tune_module.tune(scrambled, recs)
    assert first.params == second.params and first.validation == second.validation
    assert first.test != second.test and {s.strategy for s in first.test} >= {"personal", "popular"}
    assert first.params["popularity_half_life_hours"] in tune_module.REORDERS["popularity_half_life_hours"]


def test_tuned_settings_apply_until_the_next_tune_and_a_broken_file_is_ignored(tmp_path):
    path = tmp_path / "recs-tuned.json"
    recs = Recs()
    tune_module.save(tune_module.Tuning({"regularization": 0.5, "popularity_half_life_hours": 720.0},
                                        0.1, []), path)
    applied = tune_module.tuned(recs, path)
    assert applied.regularization == 0.5 and applied.popularity_half_life_hours == 720.0
    assert applied.factors == recs.factors
    for broken in ("{", '{"params": {"regularization": "a lot"}}', "[]"):
        path.write_text(broken)
        assert tune_module.tuned(recs, path) == recs


def test_evaluate_tunes_first_and_tune_is_kept_for_train(small_log, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tune_module, "REFITS", {"regularization": (0.01, 0.5), "weighting": ("bm25",)})
    monkeypatch.chdir(tmp_path)  # the demo config's var/ lands here
    log = ["--config", str(DEMO_CONFIG), "--events", str(small_log)]
    assert main(["evaluate", *log, "--json"]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert main(["evaluate", *log, "--json", "--untuned"]) == 0
    untuned = json.loads(capsys.readouterr().out)
    assert tuned["tuned"]["regularization"] in (0.01, 0.5) and untuned["tuned"] is None
    assert {s["strategy"] for s in untuned["scores"]} == {s["strategy"] for s in tuned["scores"]}

    assert main(["tune", *log]) == 0 and (tmp_path / "var" / "recs-tuned.json").exists()
    assert main(["train", *log]) == 0
    params = ModelArtifact.load(tmp_path / "var" / "model.npz").meta["params"]
    assert all(params[name] == value for name, value in tuned["tuned"].items())
