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
from .tables import item_table, user_table


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


class EmptyLog(ValueError):
    """The log (or the chosen days of it) holds nothing to learn from."""


def read_log(event_source: str | Path, recs: Recs, start: dt.date | None = None,
             end: dt.date | None = None) -> tuple[Interactions, ReadReport]:
    """The weighted interactions of a log folder (or one file) in [start, end], with what was skipped.

    Files are chosen by the day in their name, and rows by their own time as well: a single file
    (a log converted from elsewhere) may span many days.
    """
    report = ReadReport()
    interactions = read_interactions(log_files(event_source, start, end), recs, report,
                                     cache_for(event_source))
    if start is not None or end is not None:
        first = _utc_seconds(start) if start else -np.inf
        last = _utc_seconds(end + dt.timedelta(days=1)) if end else np.inf
        interactions = interactions.select((interactions.ts >= first) & (interactions.ts < last))
    if len(interactions) == 0:
        days = f" between {start or 'the start'} and {end or 'the end'}" if start or end else ""
        raise EmptyLog(f"no usable interactions in {event_source}{days}")
    return interactions, report


def _utc_seconds(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()


def train(event_source: str | Path, recs: Recs, out: str | Path, start: dt.date | None = None,
          end: dt.date | None = None) -> ModelArtifact:
    """Read the log, fit, precompute top-N tables, and write the artifact atomically."""
    began = time.perf_counter()
    interactions, report = read_log(event_source, recs, start, end)
    return train_on(interactions, report, recs, out, began=began)


def train_on(interactions: Interactions, report: ReadReport, recs: Recs, out: str | Path,
             show_progress: bool = False, offline_scores: dict | None = None,
             began: float | None = None) -> ModelArtifact:
    """Fit on interactions already read, precompute top-N tables, write the artifact atomically.

    ``began`` (a ``time.perf_counter()`` reading) is when the caller started reading, so the
    artifact's ``seconds`` is the whole cost of training; ``steps`` splits the part done here.
    """
    began = time.perf_counter() if began is None else began
    clock = _Steps()
    data = build_matrix(interactions)
    clock.lap("matrix")
    model = fit(data, recs, show_progress)
    clock.lap("fit")
    user_factors = np.asarray(model.user_factors, dtype=np.float32)
    item_factors = np.asarray(model.item_factors, dtype=np.float32)
    readers = recent_readers(interactions, data, recs.max_age_hours)
    items = data.matrix.shape[1]
    n = max(1, min(recs.top_n, items - 1))
    user_top = user_table(user_factors, item_factors, engaged_matrix(interactions, data), readers, n)
    neighbors = item_table(item_factors, n)
    clock.lap("tables")
    artifact = ModelArtifact(
        user_ids=data.user_ids, item_ids=data.item_ids, user_factors=user_factors,
        item_factors=item_factors, user_top=user_top, item_neighbors=neighbors,
        meta={"trained_at": time.time(),
              "data": {"first_ts": float(interactions.ts.min()), "last_ts": float(interactions.ts.max()),
                       "events": report.events, "skipped_lines": len(report.skipped),
                       "users": int(data.matrix.shape[0]), "items": int(items),
                       "nonzeros": int(data.matrix.nnz), "table_readers": int(len(readers))},
              "params": asdict(recs), "offline": offline_scores or {},
              "seconds": round(time.perf_counter() - began, 3), "steps": clock.steps})
    artifact.save(out)
    clock.lap("write")  # the copy in the file could not include its own writing
    artifact.meta["seconds"] = round(time.perf_counter() - began, 3)
    return artifact


def engaged_matrix(interactions: Interactions, data: UserItems) -> csr_matrix:
    """Reader x item marks of what each reader read or clicked, in ``data``'s rows and columns.

    Being shown an item in a widget (an impression, in the matrix when ``impression_weight`` > 0)
    is not having read it: such items stay recommendable, and a later click on one can score.
    """
    if interactions.engaged.all():
        return data.matrix
    picked = interactions.select(interactions.engaged)
    rows = np.searchsorted(data.user_ids, picked.user_vocab)[picked.user_codes]
    cols = np.searchsorted(data.item_ids, picked.item_vocab)[picked.item_codes]
    marks = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=data.matrix.shape)
    marks.sum_duplicates()
    return marks


def recent_readers(interactions: Interactions, data: UserItems, max_age_hours: float) -> np.ndarray:
    """Matrix rows of the readers active within ``max_age_hours`` of the log's last event."""
    recent = interactions.ts >= interactions.ts.max() - max_age_hours * 3600
    codes = np.unique(interactions.user_codes[recent])
    return np.searchsorted(data.user_ids, interactions.user_vocab[codes]).astype(np.int64)


class _Steps:
    """Seconds per named step, each measured from the end of the previous one."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round(now - self._last, 3)
        self._last = now
