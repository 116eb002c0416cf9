"""Offline evaluation: train on the past, score each strategy on the reads and clicks that followed.

For every reader who read or clicked in the test period and was known before it, each strategy
recommends k items (never one the reader had already touched, and only articles still in
circulation: touched by anyone within ``max_age_hours`` before the cutoff, the log's stand-in
for the server's rule of recommending only articles published within that age); a hit is an
article the reader then read or clicked. Reported per strategy: precision@k, ndcg@k and catalog
coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model import Recs
from .matrix import Interactions, build_matrix
from .tables import item_table, user_table
from .train import fit


@dataclass
class Score:
    strategy: str
    precision: float
    ndcg: float
    coverage: float
    readers: int


def split_time(data: Interactions, test_share: float) -> float:
    """The cutoff time leaving ``test_share`` of the time span for testing."""
    first, last = float(data.ts.min()), float(data.ts.max())
    return last - (last - first) * test_share


def evaluate(data: Interactions, recs: Recs, k: int = 6, test_share: float = 0.2) -> list[Score]:
    cutoff = split_time(data, test_share)
    engaged = data.select(data.engaged)
    past = build_matrix(data.select(data.ts < cutoff))
    future = engaged.select(engaged.ts >= cutoff)
    model = fit(past, recs)
    user_index = {u: n for n, u in enumerate(past.user_ids.tolist())}
    heat = _heat(engaged.select(engaged.ts < cutoff), past.item_ids, recs, cutoff)
    popular = np.argsort(-heat)[:200]

    def fresh_first(row: np.ndarray) -> np.ndarray:
        """CF finds what suits the reader; current heat orders it, as the server does."""
        row = row[row >= 0]
        return row[np.argsort(-heat[row], kind="stable")]

    targets: dict[int, set[int]] = {}
    item_index = {i: n for n, i in enumerate(past.item_ids.tolist())}
    for user, item in zip(future.users.tolist(), future.items.tolist()):
        if user in user_index and item in item_index:
            targets.setdefault(user_index[user], set()).add(item_index[item])
    n = max(recs.top_n, k)
    user_top = user_table(model.user_factors, model.item_factors, past.matrix,
                          np.fromiter(targets, dtype=np.int64, count=len(targets)), n)
    neighbors = item_table(model.item_factors, n)
    last_item = _last_items(data.select(data.ts < cutoff), user_index, item_index)
    recent = data.select((data.ts < cutoff) & (data.ts >= cutoff - recs.max_age_hours * 3600))
    available = {item_index[i] for i in set(recent.items.tolist())}
    strategies = {
        "personal": lambda u: fresh_first(user_top[u]),
        "related": lambda u: fresh_first(neighbors[last_item[u]]) if u in last_item else popular[:0],
        "popular": lambda u: popular,
    }
    matrix = past.matrix
    scores = []
    for name, candidates in strategies.items():
        hits, gains, shown = [], [], set()
        for u, wanted in targets.items():
            seen = set(matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]].tolist())
            top = [i for i in candidates(u).tolist()
                   if i >= 0 and i not in seen and i in available][:k]
            shown.update(top)
            hits.append(sum(i in wanted for i in top) / k)
            gains.append(_ndcg(top, wanted, k))
        scores.append(Score(name, float(np.mean(hits)) if hits else 0.0,
                            float(np.mean(gains)) if gains else 0.0,
                            len(shown) / max(1, len(past.item_ids)), len(targets)))
    return scores


def _heat(engaged: Interactions, item_ids: np.ndarray, recs: Recs, now: float) -> np.ndarray:
    """Recency-decayed reads and clicks at the cutoff, as the server's ``Popularity`` counts."""
    tau = recs.popularity_half_life_hours * 3600 / math.log(2)
    index = np.searchsorted(item_ids, engaged.items).clip(0, len(item_ids) - 1)
    known = item_ids[index] == engaged.items
    score = np.bincount(index[known], weights=np.exp((engaged.ts[known] - now) / tau),
                        minlength=len(item_ids))
    return score


def _last_items(data: Interactions, user_index: dict, item_index: dict) -> dict[int, int]:
    order = np.argsort(data.ts, kind="stable")
    last = dict(zip(data.users[order].tolist(), data.items[order].tolist()))
    return {user_index[u]: item_index[i] for u, i in last.items() if u in user_index}


def _ndcg(top: list[int], wanted: set[int], k: int) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, i in enumerate(top) if i in wanted)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return dcg / ideal if ideal else 0.0


def table(scores: list[Score], k: int) -> str:
    lines = [f"| strategy | precision@{k} | ndcg@{k} | coverage | readers |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {s.strategy} | {s.precision:.4f} | {s.ndcg:.4f} | {s.coverage:.3f} | {s.readers} |"
              for s in scores]
    return "\n".join(lines)
