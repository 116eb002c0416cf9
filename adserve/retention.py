"""How long adserve keeps what it knows about a reader: retention by age, and erasure on request.

A reader id lives in three places: the raw event files (and the parse cache training keeps of
them, the reports' daily rollups of their hashes; with an event stream, the stream and this host's
copy of it), the per-reader frequency-cap counters and A/B variant assignments (in Redis, or in the
embedded store's checkpoint), and the model's per-reader table. Budgets, pacing and the catalog
carry no reader id, so neither deleting old files nor forgetting a reader
changes a campaign's lifetime counters.

Erasure rewrites the id in place, byte for byte the same length (``"user":null`` padded with
spaces, still valid JSON), instead of writing new files: a running server keeps appending to
today's file through its open descriptor, and a renamed copy would silently lose those events.
Events stay, without the reader, so spend and delivery totals do not change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from . import checkpoint
from .events import local_copy, log_files
from .ledger import reader_keys
from .recs.artifact import ArtifactError, ModelArtifact
from .recs.matrix import cache_for
from .reports import rollup
from .state import RedisState


def expire(event_dir: str | Path, retention_days: int, today: dt.date) -> list[Path]:
    """Delete event files whose UTC day is more than ``retention_days`` before ``today``."""
    last_expired = today - dt.timedelta(days=retention_days + 1)
    expired = log_files(event_dir, end=last_expired) if Path(event_dir).is_dir() else []
    for path in expired:
        path.unlink()
        _drop_parse_cache(path)
    return expired


@dataclass
class Erasure:
    """What ``forget`` removed, for the operator's record."""
    reader: str
    events: int = 0
    files: list[str] = field(default_factory=list)
    stream: int | None = None  # events erased in the event stream; None: no stream
    counters: list[str] | None = None  # None: counters are in-process (no Redis to erase from)
    checkpointed: list[str] = field(default_factory=list)  # removed from the embedded store's checkpoint
    model: str | None = None

    def report(self) -> str:
        lines = [f"forgot reader {self.reader}:",
                 f"  event log: reader id removed from {self.events} events in {len(self.files)} files"
                 " (the events stay, so totals do not change)"]
        lines += [f"    {name}" for name in self.files]
        if self.stream is not None:
            lines.append(f"  event stream: reader id removed from {self.stream} events (archives written "
                         "by export-events before now are not changed)")
        if self.counters is None:
            lines.append(f"  counters: deleted {len(self.checkpointed)} frequency-cap counters and variant assignments from the "
                         "embedded store's checkpoint (a server running now still holds them in memory "
                         "and writes them back: stop it before forgetting)")
        else:
            lines.append(f"  counters: deleted {len(self.counters)} frequency-cap counters and variant assignments from Redis")
        lines.append(f"  model: {self.model}" if self.model else "  model: the reader was not in it")
        return "\n".join(lines)


def forget(reader: str, event_dir: str | Path, model_path: str | Path,
           redis_url: str | None = None, stream: str | None = None) -> Erasure:
    """Erase ``reader`` from the event log (and stream), the shared counters and the model's tables."""
    erasure = Erasure(reader)
    folders = [Path(event_dir)] + ([local_copy(stream, event_dir)] if stream else [])
    for path in [path for folder in folders if folder.is_dir() for path in log_files(folder)]:
        if erased := _erase_in_file(path, reader):
            erasure.events += erased
            erasure.files.append(str(path))
            _drop_parse_cache(path)
    if stream:
        from .events.redis_stream import erase_reader

        erasure.stream = erase_reader(stream, reader)
    if redis_url:
        erasure.counters = asyncio.run(_forget_counters(redis_url, reader))
    elif Path(event_dir).is_dir():
        erasure.checkpointed = checkpoint.erase(event_dir, reader_keys(reader)[1])
    erasure.model = _forget_in_model(Path(model_path), reader)
    return erasure


def _erase_in_file(path: Path, reader: str) -> int:
    """Overwrite each ``"user": "<reader>"`` value of the file with ``null`` and padding."""
    value = orjson.dumps(reader)
    pattern = re.compile(rb'"user"\s*:\s*(' + re.escape(value) + rb")")
    blank = (b"null" if len(value) >= 4 else b'""').ljust(len(value))  # "" only for 1-char ids
    with open(path, "r+b") as f:
        if f.seek(0, 2) == 0:
            return 0
        with mmap.mmap(f.fileno(), 0) as view:
            spans = [match.span(1) for match in pattern.finditer(view)]
            for start, end in spans:
                view[start:end] = blank
            view.flush()
    return len(spans)


def _drop_parse_cache(path: Path) -> None:
    """Training's parsed columns of a log file hold its reader ids too, and the reports' rollup
    of its day their hashes."""
    cache = cache_for(path.parent)
    for cached in cache.glob(f"{path.name}.*.npz") if cache and cache.is_dir() else ():
        cached.unlink()
    rollup.drop(path)


async def _forget_counters(redis_url: str, reader: str) -> list[str]:
    state = RedisState(redis_url)
    try:
        return await state.delete_matching(*reader_keys(reader))
    finally:
        await state.close()


def _forget_in_model(model_path: Path, reader: str) -> str | None:
    """Drop the reader's row of factors and precomputed top-N; the server reloads the file."""
    if not model_path.is_file():
        return None
    try:
        artifact = ModelArtifact.load(model_path)
    except ArtifactError as exc:
        return f"not changed, unreadable: {exc}"
    keep = artifact.user_ids != reader
    if keep.all():
        return None
    artifact.user_ids = artifact.user_ids[keep]
    artifact.user_factors = artifact.user_factors[keep]
    artifact.user_top = artifact.user_top[keep]
    artifact.save(model_path)
    return f"removed the reader's row from {model_path}"
