"""The precomputed top-N tables the server looks widgets up in: per reader and per article.

Scores are one matrix product per block of rows (bounded memory, one BLAS call each) and the best
N of a row are picked with ``argpartition``, so the cost is the product itself, not a ranking per
row. Tables are built only for readers active within ``recs.max_age_hours`` of the log's end:
a reader gone longer is unlikely to return before the next model, and the server folds them in
from their factors or history when they do. Rows without a table hold -1.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix, identity

BLOCK_SCORES = 8_000_000  # float32 scores per block: 32 MB, whatever the catalog's size


def user_table(user_factors: np.ndarray, item_factors: np.ndarray, seen: csr_matrix,
               readers: np.ndarray, n: int) -> np.ndarray:
    """[users, n] best items for each of ``readers`` (rows of ``seen``), the items they saw banned."""
    table = np.full((seen.shape[0], n), -1, dtype=np.int32)
    table[readers] = top_n(user_factors[readers], item_factors, seen[readers], n)
    return table


def item_table(item_factors: np.ndarray, n: int) -> np.ndarray:
    """[items, n] most similar items by cosine of their factors, an item never its own neighbour."""
    norms = np.linalg.norm(item_factors, axis=1, keepdims=True)
    unit = item_factors / np.where(norms > 0, norms, 1)
    return top_n(unit, unit, identity(len(unit), dtype=np.float32, format="csr"), n)


def top_n(queries: np.ndarray, targets: np.ndarray, banned: csr_matrix, n: int) -> np.ndarray:
    """Indices of the ``n`` best targets per query by dot product, best first, -1 padded.

    ``banned`` (queries x targets) marks targets a query must not get.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    return top_scored(lambda rows: queries[rows] @ targets.T, banned, n)


def top_scored(score, banned: csr_matrix, n: int) -> np.ndarray:
    """``top_n`` for any scoring: ``score(slice)`` gives the dense scores of that block of rows."""
    count = banned.shape[1]
    table = np.full((banned.shape[0], n), -1, dtype=np.int32)
    n = min(n, count)
    if n == 0:
        return table
    rows = max(1, BLOCK_SCORES // max(1, count))
    for start in range(0, banned.shape[0], rows):
        scores = np.asarray(score(slice(start, start + rows)), dtype=np.float32)
        block = banned[start:start + rows]
        scores[np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)), block.indices] = -np.inf
        # the n largest sit right of position count - n (partitioning ``-scores`` would copy them)
        best = np.argpartition(scores, count - n, axis=1)[:, count - n:]
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        usable = np.isfinite(np.take_along_axis(best_scores, order, axis=1))  # banned ones sort last
        table[start:start + rows, :n] = np.where(usable, best, -1)
    return table
