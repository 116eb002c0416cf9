"""The default event sink: append-only JSON Lines files, what training and replay read.

Format: UTF-8 JSON Lines, one event per line, in ``<folder>/events-YYYY-MM-DD.<writer>.jsonl``
(UTC day; one writer name per replica so replicas never share a file). Every event has ``ts``
(Unix seconds, float), ``type`` (``decision``, ``impression`` or ``click``) and ``event_id``
(``ids.py``); see README.

Durability: ``append`` hands the line to the kernel with one ``write`` before it returns, so an
event the server acknowledged survives ``kill -9``; a background task ``fsync``s in batches so it
also survives power loss a fraction of a second later. A torn last line (power cut mid-write) is
skipped and reported by the reader, never fatal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from .ids import EventIds

FILE_GLOB = "events-*.jsonl"


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).date().isoformat()


class LogUnavailable(Exception):
    """The log cannot be written now (disk full, folder gone or read-only); retry shortly.

    Nothing was acknowledged: the server answers 503 with ``Retry-After``, and every later
    write tries the file again, so the log recovers by itself once it is writable.
    """


def serialised(events: Iterable[dict], ids: EventIds, now: float) -> list[bytes]:
    """Each event as one JSON line (``ts`` set to ``now`` when missing), with a new ``event_id``."""
    return [orjson.dumps({"ts": now, **e, "event_id": ids()} if "ts" not in e
                         else {**e, "event_id": ids()}, option=orjson.OPT_APPEND_NEWLINE) for e in events]


class EventLog:
    def __init__(self, folder: str | Path, writer: str = "main", clock=time.time) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.source = self.folder
        self._clock = clock
        self._ids = EventIds(writer, clock)
        self._fd: int | None = None
        self._span = (0.0, 0.0)  # [start, end) of the open file's day, Unix seconds
        self._dirty = False  # pragma: no mutate (only a write opens the file, and it sets this)
        self.failing = False  # the last write failed: the next one reopens the file first
        self.failures = 0

    async def write(self, *events: dict) -> None:
        """The ``EventSink`` call: ``append``, which never waits."""
        self.append(*events)

    async def recent(self, since: float, types: frozenset[str]) -> list[dict]:
        own = [path for path in log_files(self.folder, dt.date.fromisoformat(day_of(since)))
               if path.name.endswith(f".{self.writer}.jsonl")]
        return [event for event in read_events(own, types=types) if event["ts"] >= since]

    def append(self, *events: dict) -> None:
        """Write events (``ts`` added when missing, a new ``event_id`` each) with a single write
        call, or raise LogUnavailable."""
        first = events[0]
        if len(events) == 1 and "ts" in first:  # a page's decision event: one line, no list to join
            self.append_lines(first["ts"], orjson.dumps({**first, "event_id": self._ids()},
                                                        option=orjson.OPT_APPEND_NEWLINE))
            return
        now = self._clock()
        self.append_lines(first.get("ts", now), b"".join(serialised(events, self._ids, now)))

    def append_lines(self, ts: float, data: bytes) -> None:
        """Write whole lines, already serialised, to the file of ``ts``'s day (the exporter's
        copies keep their ids), or raise LogUnavailable."""
        try:
            if self.failing or not self._span[0] <= ts < self._span[1]:
                self._open_day(ts)  # a new UTC day, or the last write failed
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            self.failing = True  # a torn line is ended when the file is reopened
            self.failures += 1
            raise LogUnavailable(f"event log: {exc}") from exc
        self.failing = False
        self._dirty = True

    def _open_day(self, ts: float) -> None:
        """Open the file of ``ts``'s UTC day (again, after a failed write).

        The new file is opened before the old one is closed: a failed open leaves the old
        descriptor in place, never a closed number the next socket could reuse.
        """
        start = ts - ts % 86400  # Unix time has no leap seconds: UTC days are 86,400 s
        path = self.folder / f"events-{day_of(start)}.{self.writer}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _end_torn_line(path, fd)
        except OSError:
            os.close(fd)
            raise
        self.close()
        self._fd, self._span = fd, (start, start + 86400)

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    async def flush(self) -> None:
        """fsync what was written since the last one, off the event loop thread; a failed fsync
        makes the next write reopen."""
        if self._dirty:
            try:
                await asyncio.to_thread(self.sync)
            except OSError:
                self.failing = True

    async def sync_forever(self, interval: float = 0.2) -> None:
        """Batched fsync."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.sync()
            except OSError:
                pass  # what it could not flush was acknowledged with its write; nothing to retry
            os.close(self._fd)
            self._fd = None
            self._span = (0.0, 0.0)


def _end_torn_line(path: Path, fd: int) -> None:
    """After a crash mid-write, end the torn line so the next event is not glued onto it."""
    size = os.fstat(fd).st_size
    if size:
        with open(path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                os.write(fd, b"\n")


@dataclass
class ReadReport:
    """What a read skipped: ``(file, line number)`` of each line that did not parse."""
    files: int = 0
    events: int = 0
    skipped: list[tuple[str, int]] = field(default_factory=list)


def first_copies(events: Iterable[dict]) -> list[dict]:
    """Each event once: a later copy of an ``event_id`` (delivered twice by a stream) is dropped."""
    seen: set[str] = set()
    return [event for event in events
            if (event_id := event.get("event_id")) is None or not (event_id in seen or seen.add(event_id))]


def log_sizes(folder: str | Path) -> dict[str, int]:
    """How far each log file of ``folder`` is written: where a later read can pick up."""
    return {path.name: path.stat().st_size for path in log_files(folder)}


def log_files(source: str | Path, start: dt.date | None = None, end: dt.date | None = None) -> list[Path]:
    """The log files of a folder (or the one file given) whose day lies in [start, end]."""
    source = Path(source)
    if source.is_file():
        return [source]
    files = []
    for path in sorted(source.glob(FILE_GLOB)):
        day = log_day(path)  # None: a stray file whose name carries no day is no log file
        if day is not None and (start is None or day >= start) and (end is None or day <= end):
            files.append(path)
    return files


def log_day(path: Path) -> dt.date | None:
    """The UTC day a log file's name carries (``events-YYYY-MM-DD.<writer>.jsonl``), or None."""
    try:
        return dt.date.fromisoformat(path.name.split("-", 1)[1][:10])
    except (IndexError, ValueError):
        return None


def read_events(files: Iterable[Path], report: ReadReport | None = None,
                types: frozenset[str] | None = None, skip: dict[str, int] | None = None) -> Iterator[dict]:
    """The events of ``files`` in order; ``skip`` maps a file's name to the bytes already read.

    Line numbers in the report count from the first line read.
    """
    report = report if report is not None else ReadReport()
    for path in files:
        report.files += 1
        with open(path, "rb") as f:
            f.seek((skip or {}).get(path.name, 0))
            for number, line in enumerate(f, 1):
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    report.skipped.append((str(path), number))
                    continue
                if not isinstance(event, dict):
                    report.skipped.append((str(path), number))
                    continue
                if types is None or event.get("type") in types:
                    report.events += 1
                    yield event
