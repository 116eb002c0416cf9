"""Event log to the user x item matrix that implicit trains on.

Each event contributes (user, item, weight) triples: a click on a recommended item, reading an
article (the page of a decision), and, with a small weight, items shown in a widget. Parsing is one
pass over the lines; the id mapping and summing are vectorised (``np.unique`` and a COO to CSR
conversion), not Python dict loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import orjson
from scipy.sparse import coo_matrix, csr_matrix

from ..events import ReadReport
from ..model import Recs


@dataclass
class Interactions:
    """Raw triples in log order, with their timestamps (for time splits)."""
    users: np.ndarray    # str
    items: np.ndarray    # str
    weights: np.ndarray  # float32
    ts: np.ndarray       # float64
    engaged: np.ndarray  # bool: a click or a read, not a mere impression (evaluation's targets)

    def select(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.users[mask], self.items[mask], self.weights[mask], self.ts[mask],
                            self.engaged[mask])


@dataclass
class UserItems:
    matrix: csr_matrix   # users x items, implicit 0.7's orientation for fit()
    user_ids: np.ndarray
    item_ids: np.ndarray


def read_interactions(files: Iterable[Path], recs: Recs, report: ReadReport | None = None) -> Interactions:
    """One pass over the log lines; bots and events without a reader are skipped."""
    report = report if report is not None else ReadReport()
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    stamps: list[float] = []
    engaged: list[bool] = []
    per_type = {"click": recs.click_weight, "decision": recs.view_weight,
                "impression": recs.impression_weight}
    for path in files:
        report.files += 1
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    event = orjson.loads(line)
                    kind, user, ts = event["type"], event["user"], float(event["ts"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    report.skipped.append((str(path), number))
                    continue
                weight = per_type.get(kind)
                if not user or not weight or event.get("bot"):
                    continue
                targets = _targets(kind, event)
                report.events += 1
                users += [user] * len(targets)
                items += targets
                weights += [weight] * len(targets)
                stamps += [ts] * len(targets)
                engaged += [kind != "impression"] * len(targets)
    return Interactions(np.array(users, dtype=str), np.array(items, dtype=str),
                        np.array(weights, dtype=np.float32), np.array(stamps, dtype=np.float64),
                        np.array(engaged, dtype=bool))


def _targets(kind: str, event: dict) -> list[str]:
    if kind == "click":
        item = event.get("item")
        return [item] if isinstance(item, str) else []
    if kind == "decision":
        page = event.get("page")
        return [page] if isinstance(page, str) else []
    shown = event.get("items")
    return [i for i in shown if isinstance(i, str)] if isinstance(shown, list) else []


def build_matrix(data: Interactions, item_ids: np.ndarray | None = None) -> UserItems:
    """Sum duplicate (user, item) weights into a CSR matrix; ``item_ids`` fixes the columns."""
    user_ids, rows = np.unique(data.users, return_inverse=True)
    if item_ids is None:
        item_ids, cols = np.unique(data.items, return_inverse=True)
        keep = np.ones(len(cols), dtype=bool)
    else:
        cols = np.searchsorted(item_ids, data.items).clip(0, max(len(item_ids) - 1, 0))
        keep = item_ids[cols] == data.items if len(item_ids) else np.zeros(len(cols), bool)
    matrix = coo_matrix((data.weights[keep], (rows[keep], cols[keep])),
                        shape=(len(user_ids), len(item_ids))).tocsr()
    matrix.sum_duplicates()
    return UserItems(csr_matrix(matrix, dtype=np.float32), user_ids, item_ids)
