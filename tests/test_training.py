"""Training's own steps: which days it reads, the top-N tables, who gets one, and what it costs."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from adserve.model import Recs
from adserve.recs import tables
from adserve.recs.recommender import LoadedModel
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
