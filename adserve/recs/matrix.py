"""Event log to the user x item matrix that implicit trains on.

Each event contributes (user, item, weight) triples: a click on a recommended item, reading an
article (the page of a decision), and, with a small weight, items shown in a widget. Parsing is one
pass over the lines (cached per file); the id mapping and summing are vectorised (hashing with
``np.unique`` and a COO to CSR conversion), not Python dict loops.
"""

from __future__ import annotations

import re
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


KINDS = ("click", "decision", "impression")
CACHE_VERSION = 1


def read_interactions(files: Iterable[Path], recs: Recs, report: ReadReport | None = None,
                      cache: Path | None = None) -> Interactions:
    """(user, item, weight) triples of the log files, in order.

    Each file is parsed once into columns; with ``cache`` those columns are kept as ``.npz`` keyed
    by the file's size and mtime, so retraining re-parses only the file still being written
    (closed days never change). Weights are applied afterwards, vectorised, by event kind.
    """
    report = report if report is not None else ReadReport()
    per_type = {"click": recs.click_weight, "decision": recs.view_weight,
                "impression": recs.impression_weight}
    unused = tuple(kind for kind in KINDS if not per_type[kind])
    parts = [_columns(Path(path), unused, report, cache) for path in files]
    report.files += len(parts)
    columns = {name: np.concatenate([p[name] for p in parts]) if parts else np.array([], dtype=kind)
               for name, kind in (("users", str), ("items", str), ("kinds", np.int8), ("ts", np.float64))}
    weights = np.array([per_type[kind] for kind in KINDS], dtype=np.float32)[columns["kinds"]]
    keep = weights > 0
    return Interactions(columns["users"][keep], columns["items"][keep], weights[keep],
                        columns["ts"][keep], columns["kinds"][keep] != KINDS.index("impression"))


def cache_for(event_source: str | Path) -> Path | None:
    """Where parsed columns of a log folder are kept (none for a single file)."""
    source = Path(event_source)
    return source / ".parse-cache" if source.is_dir() else None


def _columns(path: Path, unused: tuple[str, ...], report: ReadReport, cache: Path | None) -> dict:
    stat = path.stat()
    key = f"v{CACHE_VERSION}-{stat.st_size}-{stat.st_mtime_ns}-{'-'.join(unused)}"
    cached = cache / f"{path.name}.{key}.npz" if cache else None
    if cached is not None and cached.exists():
        with np.load(cached, allow_pickle=False) as data:
            columns = {name: data[name] for name in data.files}
        report.events += int(columns.pop("events"))
        report.skipped += [(str(path), int(n)) for n in columns.pop("skipped")]
        return columns
    before_events, before_skipped = report.events, len(report.skipped)
    columns = _parse(path, unused, report)
    if cached is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob(f"{path.name}.*.npz"):
            stale.unlink()
        skipped = [n for _, n in report.skipped[before_skipped:]]
        np.savez(cached, events=report.events - before_events, skipped=np.array(skipped, dtype=np.int64),
                 **columns)
    return columns


def _parse(path: Path, unused: tuple[str, ...], report: ReadReport) -> dict:
    """The one per-line Python loop of training, kept to a parse and four appends.

    Lines of a kind whose weight is zero are recognised by their bytes and never parsed (the
    server's own compact format; lines formatted otherwise are parsed and then dropped).
    """
    markers = [re.escape(f'"type":"{kind}"'.encode()) for kind in unused]
    skip = re.compile(b"|".join(markers)).search if markers else (lambda line: None)
    codes = {kind: n for n, kind in enumerate(KINDS) if kind not in unused}
    users: list[str] = []
    items: list[str] = []
    kinds: list[int] = []
    stamps: list[float] = []
    add_user, add_item, add_kind, add_ts = users.append, items.append, kinds.append, stamps.append
    loads = orjson.loads
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if skip(line):
                continue
            try:
                event = loads(line)
                kind, user, ts = event["type"], event["user"], float(event["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                report.skipped.append((str(path), number))
                continue
            code = codes.get(kind)
            if not user or code is None or event.get("bot"):
                continue
            report.events += 1
            for target in _targets(kind, event):
                add_user(user)
                add_item(target)
                add_kind(code)
                add_ts(ts)
    return {"users": np.array(users, dtype=str), "items": np.array(items, dtype=str),
            "kinds": np.array(kinds, dtype=np.int8), "ts": np.array(stamps, dtype=np.float64)}


def _targets(kind: str, event: dict) -> list[str]:
    if kind == "click":
        item = event.get("item")
        return [item] if isinstance(item, str) else []
    if kind == "decision":
        page = event.get("page")
        return [page] if isinstance(page, str) else []
    shown = event.get("items")
    return [i for i in shown if isinstance(i, str)] if isinstance(shown, list) else []


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for strings, by hashing instead of sorting them all.

    Strings are hashed in C (``map(hash, ...)``), the int64 hashes are uniqued, and only the few
    distinct strings are sorted. A hash collision is detected and falls back to ``np.unique``.
    """
    hashes = np.fromiter(map(hash, values.tolist()), dtype=np.int64, count=len(values))
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    distinct = values[first]
    if not np.array_equal(distinct[inverse], values):
        return np.unique(values, return_inverse=True)
    order = np.argsort(distinct, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[inverse]


def build_matrix(data: Interactions, item_ids: np.ndarray | None = None) -> UserItems:
    """Sum duplicate (user, item) weights into a CSR matrix; ``item_ids`` fixes the columns."""
    user_ids, rows = factorize(data.users)
    if item_ids is None:
        item_ids, cols = factorize(data.items)
        keep = np.ones(len(cols), dtype=bool)
    else:
        cols = np.searchsorted(item_ids, data.items).clip(0, max(len(item_ids) - 1, 0))
        keep = item_ids[cols] == data.items if len(item_ids) else np.zeros(len(cols), bool)
    matrix = coo_matrix((data.weights[keep], (rows[keep], cols[keep])),
                        shape=(len(user_ids), len(item_ids))).tocsr()
    matrix.sum_duplicates()
    return UserItems(csr_matrix(matrix, dtype=np.float32), user_ids, item_ids)
