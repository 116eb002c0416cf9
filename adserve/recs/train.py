"""Fit implicit on the event log and write a model artifact with precomputed top-N tables.

implicit is called under ``threadpool_limits(1, "blas")``, as its docs advise: its own threads do
the parallel work, and a multithreaded BLAS underneath them only fights them for the cores.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from implicit.nearest_neighbours import bm25_weight
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from ..events import ReadReport, log_files
from ..model import Recs
from .artifact import ModelArtifact
from .matrix import Interactions, UserItems, build_matrix, cache_for, read_interactions


def make_model(recs: Recs, seed: int = 0):
    """The configured implicit model, always a concrete CPU class (loads and pickles cleanly)."""
    if recs.algorithm == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(factors=recs.factors, regularization=recs.regularization,
                                           iterations=recs.iterations * 10, random_state=seed)
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(factors=recs.factors, regularization=recs.regularization,
                                   alpha=recs.alpha, iterations=recs.iterations, random_state=seed)


def weighted(matrix: csr_matrix, recs: Recs) -> csr_matrix:
    """BM25 damps heavy readers and blockbuster items; 'confidence' leaves scaling to alpha."""
    if recs.weighting == "bm25":
        return csr_matrix(bm25_weight(matrix, K1=100, B=0.8), dtype=np.float32)
    return matrix


def fit(data: UserItems, recs: Recs, show_progress: bool = False, seed: int = 0):
    with threadpool_limits(1, "blas"):
        model = make_model(recs, seed)
        model.fit(weighted(data.matrix, recs), show_progress=show_progress)
    return model


def top_tables(model, data: UserItems, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-N items per user (read items removed) and per item, in implicit's batch calls.

    implicit 0.7 pads rows with fewer candidates than N; padding (non-finite or zero-score
    entries of readers with an empty row) is turned into -1 so the server drops it.
    """
    users, items = data.matrix.shape
    n_user = max(1, min(n, items - 1))
    n_item = max(1, min(n + 1, items))
    with threadpool_limits(1, "blas"):
        user_ids, user_scores = model.recommend(np.arange(users), data.matrix, N=n_user,
                                                filter_already_liked_items=True)
        item_ids, item_scores = model.similar_items(np.arange(items), N=n_item)
    user_top = np.where(np.isfinite(user_scores) & (user_scores != 0), user_ids, -1)
    user_top[np.diff(data.matrix.indptr) == 0] = -1
    neighbors = np.where(np.isfinite(item_scores), item_ids, -1)
    neighbors[neighbors == np.arange(items)[:, None]] = -1  # an item is not related to itself
    return user_top.astype(np.int32), _compact(neighbors.astype(np.int32))[:, :n]


def _compact(table: np.ndarray) -> np.ndarray:
    """Move -1 entries to the end of each row, keeping the order of the others."""
    order = np.argsort(table == -1, axis=1, kind="stable")
    return np.take_along_axis(table, order, axis=1)


def read_log(event_source: str | Path, recs: Recs, start: dt.date | None = None,
             end: dt.date | None = None) -> tuple[Interactions, ReadReport]:
    """The weighted interactions of a log folder (or one file) in [start, end], with what was skipped."""
    report = ReadReport()
    interactions = read_interactions(log_files(event_source, start, end), recs, report,
                                     cache_for(event_source))
    if len(interactions) == 0:
        raise ValueError(f"no usable interactions in {event_source}")
    return interactions, report


def train(event_source: str | Path, recs: Recs, out: str | Path, start: dt.date | None = None,
          end: dt.date | None = None) -> ModelArtifact:
    """Read the log, fit, precompute top-N tables, and write the artifact atomically."""
    began = time.time()
    interactions, report = read_log(event_source, recs, start, end)
    return train_on(interactions, report, recs, out, began=began)


def train_on(interactions: Interactions, report: ReadReport, recs: Recs, out: str | Path,
             show_progress: bool = False, offline_scores: dict | None = None,
             began: float | None = None) -> ModelArtifact:
    """Fit on interactions already read, precompute top-N tables, write the artifact atomically."""
    began = time.time() if began is None else began
    data = build_matrix(interactions)
    model = fit(data, recs, show_progress)
    user_top, neighbors = top_tables(model, data, recs.top_n)
    artifact = ModelArtifact(
        user_ids=data.user_ids, item_ids=data.item_ids,
        user_factors=np.asarray(model.user_factors, dtype=np.float32),
        item_factors=np.asarray(model.item_factors, dtype=np.float32),
        user_top=user_top, item_neighbors=neighbors,
        meta={"trained_at": time.time(), "seconds": round(time.time() - began, 3),
              "data": {"first_ts": float(interactions.ts.min()), "last_ts": float(interactions.ts.max()),
                       "events": report.events, "skipped_lines": len(report.skipped),
                       "users": int(data.matrix.shape[0]), "items": int(data.matrix.shape[1]),
                       "nonzeros": int(data.matrix.nnz)},
              "params": asdict(recs), "offline": offline_scores or {}})
    artifact.save(out)
    return artifact
