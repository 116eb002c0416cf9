"""Event log to the user x item matrix that implicit trains on.

Each event contributes (user, item, weight) triples: a click on a recommended item, reading an
article (the page of a decision), and, with a small weight, items shown in a widget. Only what
could not be bought cheaply trains: no click or impression the server logged as not counted (a
replayed token is logged, not counted), and at most ``PER_DAY`` reads, clicks or impressions of
an article per reader and UTC day of a file (slot requests, hence reads and fresh widget tokens
to click, can be sent by anyone; each replica writes its own files, so R replicas allow R times
that; on simulated logs a second read still carries taste: a cap of one made personal no better
than popular). Parsing is one
pass over the lines (cached per file) that codes ids per file against that file's vocabulary;
merging files maps the small vocabularies, not every row, and the rows stay integer arrays
through to the COO to CSR conversion.
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
    """Raw triples in log order, with their timestamps (for time splits).

    Users and items are codes into sorted vocabularies: a log has millions of rows but only
    thousands of distinct ids, and strings are what make id mapping slow.
    """
    user_codes: np.ndarray  # int32, into user_vocab
    item_codes: np.ndarray  # int32, into item_vocab
    user_vocab: np.ndarray  # str, sorted and unique (may hold ids no selected row uses)
    item_vocab: np.ndarray  # str, sorted and unique
    weights: np.ndarray     # float32
    ts: np.ndarray          # float64
    engaged: np.ndarray     # bool: a click or a read, not a mere impression (evaluation's targets)

    @property
    def users(self) -> np.ndarray:
        return self.user_vocab[self.user_codes]

    @property
    def items(self) -> np.ndarray:
        return self.item_vocab[self.item_codes]

    def __len__(self) -> int:
        return len(self.user_codes)

    def select(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.user_codes[mask], self.item_codes[mask], self.user_vocab,
                            self.item_vocab, self.weights[mask], self.ts[mask], self.engaged[mask])


@dataclass
class UserItems:
    matrix: csr_matrix   # users x items, implicit 0.7's orientation for fit()
    user_ids: np.ndarray
    item_ids: np.ndarray


KINDS = ("click", "decision", "impression")
CACHE_VERSION = 4
PER_DAY = 2  # a reader's events of one kind on one article that count in a day


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
    user_vocab, user_codes = _merge(parts, "user")
    item_vocab, item_codes = _merge(parts, "item")
    kinds = np.concatenate([p["kinds"] for p in parts]) if parts else np.array([], dtype=np.int8)
    ts = np.concatenate([p["ts"] for p in parts]) if parts else np.array([], dtype=np.float64)
    weights = np.array([per_type[kind] for kind in KINDS], dtype=np.float32)[kinds]
    keep = weights > 0
    return Interactions(user_codes[keep], item_codes[keep], user_vocab, item_vocab, weights[keep],
                        ts[keep], kinds[keep] != KINDS.index("impression"))


def _merge(parts: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """One sorted vocabulary for all files, and every file's codes re-coded into it."""
    if not parts:
        return np.array([], dtype=str), np.array([], dtype=np.int32)
    vocabs = [p[f"{name}_vocab"] for p in parts]
    vocab, inverse = factorize(np.concatenate(vocabs))
    bounds = np.cumsum([0] + [len(v) for v in vocabs])
    codes = [inverse[start:end].astype(np.int32)[p[f"{name}_codes"]]
             for start, end, p in zip(bounds[:-1], bounds[1:], parts)]
    return vocab, np.concatenate(codes)


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
    """The one per-line Python loop of training, kept to a parse, a count of reads and four appends.

    Lines of a kind whose weight is zero are recognised by their bytes and never parsed (the
    server's own compact format; lines formatted otherwise are parsed and then dropped).
    """
    markers = [re.escape(f'"type":"{kind}"'.encode()) for kind in unused]
    skip = re.compile(b"|".join(markers)).search if markers else (lambda line: None)
    codes = {kind: n for n, kind in enumerate(KINDS) if kind not in unused}
    user_vocab: dict[str, int] = {}  # id -> code, in first-seen order
    item_vocab: dict[str, int] = {}
    users: list[int] = []
    items: list[int] = []
    kinds: list[int] = []
    stamps: list[float] = []
    seen: dict[tuple[int, int, int, int], int] = {}  # (kind, reader, item, UTC day) -> events seen
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
            if event.get("counted") is False:
                continue  # a replayed token, or a hit the server did not count
            report.events += 1
            user_code = user_vocab.setdefault(user, len(user_vocab))
            for target in _targets(kind, event):
                item_code = item_vocab.setdefault(target, len(item_vocab))
                key = (code, user_code, item_code, int(ts // 86400))
                seen[key] = count = seen.get(key, 0) + 1
                if count > PER_DAY:
                    continue  # this reader's events of this kind on this article are all in for the day
                add_user(user_code)
                add_item(item_code)
                add_kind(code)
                add_ts(ts)
    return {"user_vocab": np.array(list(user_vocab), dtype=str), "user_codes": np.array(users, dtype=np.int32),
            "item_vocab": np.array(list(item_vocab), dtype=str), "item_codes": np.array(items, dtype=np.int32),
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


def build_matrix(data: Interactions) -> UserItems:
    """Sum duplicate (user, item) weights into a CSR matrix of the ids the rows use."""
    user_ids, rows = _used(data.user_vocab, data.user_codes)
    item_ids, cols = _used(data.item_vocab, data.item_codes)
    matrix = coo_matrix((data.weights, (rows, cols)), shape=(len(user_ids), len(item_ids))).tocsr()
    matrix.sum_duplicates()
    return UserItems(csr_matrix(matrix, dtype=np.float32), user_ids, item_ids)


def _used(vocab: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vocabulary entries that ``codes`` use (still sorted), and the codes renumbered to them."""
    present = np.bincount(codes, minlength=len(vocab)) > 0
    renumber = np.cumsum(present) - 1
    return vocab[present], renumber[codes]
