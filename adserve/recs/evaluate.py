"""Offline evaluation: train on the past, score each strategy on the reads and clicks that followed.

For every reader who read or clicked in the test period and was known before it, each strategy
recommends k items (never one the reader had already read or clicked: items merely shown stay
eligible; and only articles still in circulation: touched by anyone within ``max_age_hours``
before the cutoff, the log's stand-in for the server's rule of recommending only articles
published within that age); a hit is an article the reader then read or clicked. Reported per
strategy: precision@k with a 95% bootstrap interval over readers, ndcg@k and catalog coverage,
and which strategies the readers cannot tell apart (a paired bootstrap of the difference).

Strategies are the server's three (``personal`` and ``related``: CF candidates in current heat
order; ``popular``: decayed popularity) and two baselines a reviewer would ask for:
``cf-order`` (the same ALS candidates in the model's own order) and ``item-item`` (cosine
similarity of articles' readers, summed over the reader's history).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix, diags

from ..model import Recs
from .matrix import Interactions, UserItems, build_matrix
from .tables import item_table, top_scored, user_table
from .train import engaged_matrix, fit

RESAMPLES = 1000
CONFIDENCE = 0.95
STRATEGIES = ("personal", "related", "popular", "cf-order", "item-item")


@dataclass
class Score:
    strategy: str
    precision: float
    precision_interval: tuple[float, float]  # 95% bootstrap interval over readers
    ndcg: float
    coverage: float
    readers: int
    cannot_tell_from: list[str] = field(default_factory=list)  # strategies not apart at 95%


def split_time(data: Interactions, test_share: float) -> float:
    """The cutoff time leaving ``test_share`` of the time span for testing."""
    first, last = float(data.ts.min()), float(data.ts.max())
    return last - (last - first) * test_share


@dataclass
class Split:
    """A time split: what came before the cutoff (to train on) and what each reader did after."""
    cutoff: float
    before: Interactions
    past: UserItems
    seen: csr_matrix               # what each reader read or clicked before the cutoff
    targets: dict[int, set[int]]   # reader row -> items they read or clicked after it
    readers: np.ndarray            # the rows of ``targets``
    available: np.ndarray          # bool per item: still in circulation at the cutoff
    last_item: dict[int, int]      # reader row -> the last item they engaged with


def time_split(data: Interactions, recs: Recs, test_share: float) -> Split | None:
    """The split at ``test_share`` of the log's span; None when no reader spans the cutoff."""
    cutoff = split_time(data, test_share)
    before = data.select(data.ts < cutoff)
    past = build_matrix(before)
    user_index = {u: n for n, u in enumerate(past.user_ids.tolist())}
    item_index = {i: n for n, i in enumerate(past.item_ids.tolist())}
    future = data.select(data.engaged & (data.ts >= cutoff))
    targets: dict[int, set[int]] = {}
    for user, item in zip(future.users.tolist(), future.items.tolist()):
        if user in user_index and item in item_index:
            targets.setdefault(user_index[user], set()).add(item_index[item])
    if not targets:
        return None
    recent = before.select(before.ts >= cutoff - recs.max_age_hours * 3600)
    available = np.zeros(len(past.item_ids), dtype=bool)
    available[[item_index[i] for i in set(recent.items.tolist())]] = True
    return Split(cutoff, before, past, engaged_matrix(before, past), targets,
                 np.fromiter(targets, dtype=np.int64, count=len(targets)), available,
                 _last_items(before.select(before.engaged), user_index, item_index))


def evaluate(data: Interactions, recs: Recs, k: int = 6, test_share: float = 0.2,
             seed: int = 0) -> list[Score]:
    """Every strategy's scores on the last ``test_share`` of the log (empty: nothing to score)."""
    split = time_split(data, recs, test_share)
    return score(split, fit(split.past, recs), recs, k, seed) if split else []


def score(split: Split, model, recs: Recs, k: int = 6, seed: int = 0,
          names: tuple[str, ...] = STRATEGIES) -> list[Score]:
    """The ``names`` strategies' scores on ``split``, recommending from ``model``."""
    readers, seen, n = split.readers, split.seen, max(recs.top_n, k)
    heat = _heat(split.before.select(split.before.engaged), split.past.item_ids, recs, split.cutoff)
    popular = np.argsort(-heat)[:200]

    def hot_first(row: np.ndarray) -> np.ndarray:
        """CF finds what suits the reader; current heat orders it, as the server does."""
        row = row[row >= 0]
        return row[np.argsort(-heat[row], kind="stable")]

    # each table is built on first use only: tuning scores "personal" alone
    user_top = functools.cache(lambda: user_table(model.user_factors, model.item_factors, seen, readers, n))
    neighbors = functools.cache(lambda: item_table(model.item_factors, n))
    similar = functools.cache(lambda: _item_item(seen, readers, n))
    last = split.last_item
    strategies = {
        "personal": lambda u: hot_first(user_top()[u]),
        "related": lambda u: hot_first(neighbors()[last[u]]) if u in last else popular[:0],
        "popular": lambda u: popular,
        "cf-order": lambda u: user_top()[u],
        "item-item": lambda u: similar()[u],
    }
    hits = np.zeros((len(names), len(readers)))
    gains = np.zeros_like(hits)
    shown: list[set[int]] = [set() for _ in names]
    for s, name in enumerate(names):
        candidates = strategies[name]
        for r, u in enumerate(readers.tolist()):
            done = seen.indices[seen.indptr[u]:seen.indptr[u + 1]]
            row = candidates(u)
            row = row[(row >= 0) & split.available[row.clip(0)]]
            top = row[~np.isin(row, done)][:k].tolist()
            shown[s].update(top)
            wanted = split.targets[u]
            hits[s, r] = sum(i in wanted for i in top) / k
            gains[s, r] = _ndcg(top, wanted, k)
    means = _bootstrap_means(hits, seed)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=1)
    scores = []
    for s, name in enumerate(names):
        apart = [other for o, other in enumerate(names)
                 if o != s and _interval_holds_zero(means[s] - means[o])]
        scores.append(Score(name, float(hits[s].mean()), (float(low[s]), float(high[s])),
                            float(gains[s].mean()), len(shown[s]) / max(1, len(split.past.item_ids)),
                            len(readers), apart))
    return scores


def _item_item(seen: csr_matrix, readers: np.ndarray, n: int) -> np.ndarray:
    """[users, n] items most similar (cosine of their readers) to what each reader engaged with."""
    marks = csr_matrix((np.ones_like(seen.data), seen.indices, seen.indptr), shape=seen.shape)
    norms = np.sqrt(np.asarray(marks.sum(axis=0)).ravel())
    unit = marks @ diags(1 / np.where(norms > 0, norms, 1))
    similarity = (unit.T @ unit).tocsr()
    similarity.setdiag(0)
    mine = marks[readers]
    table = np.full((seen.shape[0], n), -1, dtype=np.int32)
    table[readers] = top_scored(lambda rows: (mine[rows] @ similarity).toarray(), seen[readers], n)
    return table


def _bootstrap_means(values: np.ndarray, seed: int) -> np.ndarray:
    """[strategies, RESAMPLES] means over readers drawn with replacement, the same draws for all
    strategies (so differences between them are paired)."""
    rng = np.random.default_rng(seed)
    readers = values.shape[1]
    means = np.empty((values.shape[0], RESAMPLES))
    for b in range(RESAMPLES):
        means[:, b] = values @ np.bincount(rng.integers(0, readers, readers), minlength=readers) / readers
    return means


def _interval_holds_zero(differences: np.ndarray) -> bool:
    low, high = np.quantile(differences, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return bool(low <= 0 <= high)


def _heat(engaged: Interactions, item_ids: np.ndarray, recs: Recs, now: float) -> np.ndarray:
    """Recency-decayed reads and clicks at the cutoff, as the server's ``Popularity`` counts."""
    tau = recs.popularity_half_life_hours * 3600 / math.log(2)
    index = np.searchsorted(item_ids, engaged.items).clip(0, len(item_ids) - 1)
    known = item_ids[index] == engaged.items
    return np.bincount(index[known], weights=np.exp((engaged.ts[known] - now) / tau),
                       minlength=len(item_ids))


def _last_items(data: Interactions, user_index: dict, item_index: dict) -> dict[int, int]:
    order = np.argsort(data.ts, kind="stable")
    last = dict(zip(data.users[order].tolist(), data.items[order].tolist()))
    return {user_index[u]: item_index[i] for u, i in last.items() if u in user_index}


def _ndcg(top: list[int], wanted: set[int], k: int) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, i in enumerate(top) if i in wanted)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return dcg / ideal if ideal else 0.0


def table(scores: list[Score], k: int) -> str:
    lines = [f"| strategy | precision@{k} (95% interval) | ndcg@{k} | coverage | readers |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {s.strategy} | {s.precision:.4f} ({s.precision_interval[0]:.4f}–"
              f"{s.precision_interval[1]:.4f}) | {s.ndcg:.4f} | {s.coverage:.3f} | {s.readers} |"
              for s in scores]
    pairs = sorted({" and ".join(sorted((s.strategy, o))) for s in scores for o in s.cannot_tell_from})
    lines += ["", "Cannot be told apart at 95% (paired bootstrap over readers): " + "; ".join(pairs)
              if pairs else "Every pair of strategies differs at 95% (paired bootstrap over readers)."]
    return "\n".join(lines)
