"""The exporter: a Redis stream as daily JSON Lines files, in the file sink's layout.

For archives (the stream is trimmed by age) and for every reader that takes a folder: train,
evaluate, report. An event lands in ``events-<its UTC day>.<its writer>.jsonl``. A duplicate (an
event the sink delivered twice, see ``redis_stream.py``) carries the same ``event_id`` and the
same day and writer, so it is dropped against the ids already in that one file.

Resumable: the last exported stream id is kept in ``<out>/.stream-position``, written after the
files it covers are fsynced; a crash re-exports at most one batch, whose copies are then dropped
as duplicates.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from .files import EventLog, day_of
from .redis_stream import STREAM_KEY

POSITION = ".stream-position"
STREAM_SCHEMES = ("redis://", "rediss://", "unix://")
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def is_stream(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(STREAM_SCHEMES)


class StreamUnreachable(OSError):
    """The stream could not be read; what was exported so far stays, and the next run resumes."""


@dataclass
class Exported:
    written: int = 0
    duplicates: int = 0
    unreadable: int = 0
    position: str = "-"  # the last stream id exported


def export(url: str, out: str | Path, key: str | None = None, batch: int = 1000) -> Exported:
    """Append the stream's entries after ``<out>/.stream-position`` to ``out``'s daily files."""
    import redis
    from redis.exceptions import RedisError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    position = out / POSITION
    done = Exported(position=position.read_text().strip() if position.exists() else "-")
    files: dict[str, EventLog] = {}  # writer -> its files
    seen: dict[str, set] = {}  # file name -> event ids in it
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
    try:
        while entries := client.xrange(key or STREAM_KEY, min=_after(done.position), count=batch):
            for _, fields in entries:
                _copy(fields, out, files, seen, done)
            for log in files.values():
                log.sync()
            done.position = entries[-1][0].decode()
            _save(position, done.position)
    except RedisError as exc:
        raise StreamUnreachable(f"event stream: {exc}") from exc
    finally:
        client.close()
        for log in files.values():
            log.close()
    return done


def _after(position: str) -> str:
    return position if position == "-" else f"({position}"  # exclusive: after the last exported


def _copy(fields: dict, out: Path, files: dict[str, EventLog], seen: dict[str, set], done: Exported) -> None:
    line = fields.get(b"e", b"")
    try:
        event = orjson.loads(line)
        ts = float(event["ts"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        done.unreadable += 1
        return
    writer = UNSAFE.sub("_", fields.get(b"w", b"stream").decode(errors="replace")) or "stream"
    name = f"events-{day_of(ts)}.{writer}.jsonl"
    ids = seen.get(name)
    if ids is None:
        ids = seen[name] = _ids_in(out / name)
    event_id = event.get("event_id")
    if event_id is not None and event_id in ids:
        done.duplicates += 1
        return
    ids.add(event_id)
    if writer not in files:
        files[writer] = EventLog(out, writer)
    files[writer].append_lines(ts, line if line.endswith(b"\n") else line + b"\n")
    done.written += 1


def _ids_in(path: Path) -> set:
    """The event ids already in an exported file (from an earlier run)."""
    ids = set()
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                try:
                    ids.add(orjson.loads(line).get("event_id"))
                except (orjson.JSONDecodeError, AttributeError):
                    continue
    return ids


def _save(position: Path, value: str) -> None:
    partial = position.with_suffix(".tmp")
    with open(partial, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(position)


def open_reader(spec: str | Path, copy: Path | None = None) -> Path:
    """A folder of daily files (or the one file) with the events of ``spec``.

    A folder or file is returned as it is; a stream URL is first exported (incrementally) into
    ``copy`` (default: ``export_folder``), which later calls bring up to date. Train, evaluate,
    report and the server's replay call this with their event source.
    """
    if not is_stream(spec):
        return Path(spec)
    folder = copy or export_folder(str(spec))
    export(str(spec), folder)
    return folder


def local_copy(url: str, event_dir: str | Path) -> Path:
    """The server's copy of the stream at ``url``: beside its event folder (var/ by default)."""
    return export_folder(url, Path(event_dir).parent / "stream-export")


def export_folder(url: str, into: str | Path = "var/stream-export") -> Path:
    """Where ``open_reader`` keeps its copy of the stream at ``url``: a folder of ``into`` named
    after it (by a hash: a URL may hold a password)."""
    return Path(into) / hashlib.sha256(url.encode()).hexdigest()[:12]
