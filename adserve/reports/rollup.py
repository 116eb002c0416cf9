"""Per-UTC-day rollups of the event log: what a report sums, kept beside the log.

A day's files (one per writer) are read once into three small tables:

- ``hits``: impressions and clicks that counted toward caps and budgets (``counted: true`` and
  not ``billable: false``) per kind, campaign, creative, variant, placement, widget strategy and
  sponsored-or-organic, with the spend they logged (``charge``, micro-units), how many counted
  without a logged charge (older logs: the report prices them from the config), and how many
  counted but were over a limit (``billable: false``);
- ``slots``: slot requests of decisions and how many were filled, per campaign, creative,
  variant, placement and strategy (``answers`` served, fill rate);
- ``reach``: counted impressions per campaign and reader (a hash of the id, never the id), for
  frequency distributions.

A repeated ``event_id`` of the day (a spool shipped twice) is read once. The rollup is stored
in ``<events>/.rollups/<day>.npz`` with the size and modification time of each file it was built
from, and rebuilt when any of them changes: late reconciled events, shipped spools and erasure
touch closed days, and the open day grows. So a report usually reads only the open day.
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from ..events import log_day, log_files
from .columns import Columns

VERSION = 1
FOLDER = ".rollups"
HIT_KEYS = ("kind", "campaign", "creative", "variant", "placement", "strategy", "sponsored")
SLOT_KEYS = ("campaign", "creative", "variant", "placement", "strategy", "sponsored")
# Bytes kept of each value: ids longer than this are told apart by their first bytes only.
WIDTHS = {"type": 12, "event_id": 40, "campaign": 12, "creative": 48, "variant": 34, "placement": 48,
          "strategy": 10, "sponsored": 5, "counted": 5, "billable": 5, "charge": 16, "user": 64,
          "fill": 5, "items": 2, "sponsored_list": 48}
Table = dict[str, np.ndarray]


@dataclass
class DayRollup:
    day: dt.date | None  # None: a single file whose name carries no day
    hits: Table
    slots: Table
    reach: Table


def rollups(source: str | Path, since: dt.date | None = None, until: dt.date | None = None) -> list[DayRollup]:
    """The rollup of every day of ``source`` (an event folder, or one file) in [since, until],
    read from ``.rollups`` where its files have not changed since, else built and stored."""
    source = Path(source)
    days = groupby(log_files(source, since, until), key=log_day)
    if source.is_file():
        return [build(day, [source]) for day, _ in days]
    return [_stored(source / FOLDER, day, list(paths)) for day, paths in days]


def drop(path: Path) -> None:
    """Forget the rollup built from log file ``path`` (erasure: it holds reader hashes)."""
    day = log_day(path)
    if day is not None:
        (path.parent / FOLDER / f"{day}.npz").unlink(missing_ok=True)


def _stored(folder: Path, day: dt.date, paths: list[Path]) -> DayRollup:
    stamp = np.array([f"v{VERSION}"] + [f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in paths])
    stored = folder / f"{day}.npz"
    try:
        with np.load(stored, allow_pickle=False) as data:
            if (np.array_equal(data["source"], stamp) and set(data.files) == _STORED
                    and all(info.compress_type == zipfile.ZIP_STORED for info in data.zip.infolist())):
                kept = _unpack(day, {name: data[name] for name in data.files})
                if _well_formed(kept):
                    return kept
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # none yet, or unreadable: built again below
    rollup = build(day, paths)
    folder.mkdir(exist_ok=True)
    partial = folder / f".{day}.{os.getpid()}.npz"
    np.savez(partial, source=stamp, **{f"{name}.{column}": values for name in ("hits", "slots", "reach")
                                       for column, values in getattr(rollup, name).items()})
    os.replace(partial, stored)
    return rollup


_SUMS = {"hits": ("events", "charged", "uncharged", "over_limit"), "slots": ("requests", "filled"),
         "reach": ("impressions",)}
_KEYS = {"hits": HIT_KEYS, "slots": SLOT_KEYS, "reach": ("campaign",)}
_STORED = {"source"} | {f"{name}.{column}" for name in _SUMS for column in (*_KEYS[name], *_SUMS[name])} \
    | {"reach.reader"}


def _well_formed(rollup: DayRollup) -> bool:
    """Whether a stored rollup has the tables ``build`` writes: anyone who can write the event
    folder can leave a file there, and a report must not crash on (or trust the shape of) it.
    Stored files are never compressed (``np.savez``), so one cannot unpack to more than its size."""
    for name in _SUMS:
        table = getattr(rollup, name)
        lengths = {values.shape for values in table.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            return False
        if any(table[key].dtype.kind != "S" for key in _KEYS[name]) or any(
                table[column].dtype != np.int64 for column in (*_SUMS[name], "reader") if column in table):
            return False
    return True


def _unpack(day: dt.date, data: dict) -> DayRollup:
    tables = {name: {column.split(".", 1)[1]: values for column, values in data.items()
                     if column.startswith(name + ".")} for name in ("hits", "slots", "reach")}
    return DayRollup(day, **tables)


def build(day: dt.date | None, paths: list[Path]) -> DayRollup:
    """Read the day's files into its three tables."""
    lines, records, offset = [], [], 0
    for c in (piece for path in paths for piece in Columns.pieces(path)):
        kind = c.column("type", WIDTHS["type"])
        lines.append(_lines(c, kind))
        records.append(_records(c, kind, offset))
        offset += c.lines
    lines, records = _concat(lines), _concat(records)
    keep = _first_of_each_id(lines.pop("event_id"))
    hit = keep & ((lines["kind"] == b'"impression') | (lines["kind"] == b'"click'))
    counted = hit & (lines["counted"] == b"true") & (lines["billable"] != b"false")
    priced = counted & (lines["campaign"] != b"") & (lines["campaign"] != b"null")
    has_charge = priced & _integers(lines["charge"])
    charge = np.zeros(len(hit), dtype=np.int64)
    charge[has_charge] = lines["charge"][has_charge].astype(np.int64)
    over = hit & (lines["counted"] == b"true") & (lines["billable"] == b"false")
    sums = {"events": counted, "charged": charge, "uncharged": priced & ~has_charge, "over_limit": over}
    hits = group({key: lines[key][hit] for key in HIT_KEYS},
                 {name: values[hit].astype(np.int64) for name, values in sums.items()})
    reached = counted & (lines["kind"] == b'"impression') & (lines["user"] != b"") & (lines["user"] != b"null")
    reach = group({"campaign": lines["campaign"][reached], "reader": reader_hash(lines["user"][reached])},
                  {"impressions": np.ones(int(reached.sum()), dtype=np.int64)})
    decided = keep[records.pop("line")]
    filled = ((records.pop("fill") != b"false")
              & ~((records.pop("items") == b"[]") & np.isin(records["sponsored"], (b"[]", b""))))
    slots = group({key: records[key][decided] for key in SLOT_KEYS},
                  {"requests": np.ones(int(decided.sum()), dtype=np.int64),
                   "filled": filled[decided].astype(np.int64)})
    return DayRollup(day, hits, slots, reach)


def _lines(c: Columns, kind: np.ndarray) -> Table:
    """Per line: its type, event id, and the top-level fields a hit carries."""
    hit_line = (kind == b'"impression') | (kind == b'"click')
    lines = {"kind": kind, "event_id": c.column("event_id", WIDTHS["event_id"])}
    for key in ("campaign", "creative", "variant", "placement", "strategy", "sponsored", "counted",
                "billable", "charge", "user"):
        found, line = c.find(key)
        top = hit_line[line]  # a decision's nested records are read below
        lines[key] = np.zeros(c.lines, dtype=f"S{WIDTHS[key]}")
        lines[key][line[top]] = c.values(found[top], WIDTHS[key])
    return lines


def _records(c: Columns, kind: np.ndarray, offset: int) -> Table:
    """Per slot record of every decision: its line (counted from the day's first) and its fields."""
    starts, record_line = c.find("slot")
    decision = kind[record_line] == b'"decision'
    starts, record_line = starts[decision], record_line[decision]
    records = {"line": record_line + offset}
    for key in ("campaign", "creative", "variant", "placement", "strategy", "fill", "items", "sponsored"):
        width = WIDTHS["sponsored_list" if key == "sponsored" else key]  # the native campaigns' ids
        found, line = c.find(key)
        record = np.searchsorted(starts, found, side="right") - 1
        inside = record >= 0
        inside[inside] = record_line[record[inside]] == line[inside]  # not a key of a later line
        records[key] = np.zeros(len(starts), dtype=f"S{width}")
        cut = c.lists if key in ("items", "sponsored") else c.values
        records[key][record[inside]] = cut(found[inside], width)
    return records


def _concat(tables: list[Table]) -> Table:
    return {key: np.concatenate([t[key] for t in tables]) for key in tables[0]} if tables else {}


def _integers(values: np.ndarray) -> np.ndarray:
    """Which JSON spellings are whole numbers: a torn or foreign ``charge`` (``"1"``, ``1.5``,
    ``true``) is priced like a line without one instead of failing the whole report."""
    digits = np.char.lstrip(values, b"-")
    return (digits != b"") & np.char.isdigit(digits) & (np.char.count(values, b"-") <= 1)


def _first_of_each_id(ids: np.ndarray) -> np.ndarray:
    """Lines to keep: all without an ``event_id``, and the first line of each id."""
    keep = np.ones(len(ids), dtype=bool)
    named = np.flatnonzero((ids != b"") & (ids != b"null"))
    _, first = np.unique(ids[named], return_index=True)
    keep[named] = False
    keep[named[first]] = True
    return keep


def reader_hash(users: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte string (a reader id, any key), computed on its 8-byte words."""
    width = -(-users.dtype.itemsize // 8) * 8
    words = np.zeros((len(users), width), dtype=np.uint8)
    words[:, :users.dtype.itemsize] = users.view(np.uint8).reshape(len(users), users.dtype.itemsize)
    h = np.full(len(users), 1469598103934665603, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for word in words.view("<u8").T:
            h = (h ^ word) * np.uint64(1099511628211)
            h ^= h >> np.uint64(29)
    return h.view(np.int64)


def group(keys: Table, sums: Table) -> Table:
    """One row per distinct combination of ``keys``, with ``sums`` added up (exactly, int64).

    Rows are told apart by a 64-bit hash of all their keys (sorting integers, not strings)."""
    n = len(next(iter(sums.values())))
    combined = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in keys.values():
            hashed = reader_hash(column).view(np.uint64) if column.dtype.kind == "S" else column.view(np.uint64)
            combined = (combined ^ hashed) * np.uint64(0x9E3779B97F4A7C15)
            combined ^= combined >> np.uint64(31)
    order = np.argsort(combined, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(combined[order]) != 0]) if n else np.array([], dtype=np.int64)
    rows = order[starts]
    table = {key: column[rows] for key, column in keys.items()}
    for name, values in sums.items():
        table[name] = np.add.reduceat(values[order], starts) if n else values[:0]
    return table
