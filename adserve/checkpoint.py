"""The embedded store's counters on disk, so a restart need not re-read months of event log.

One file per writer, ``<event_dir>/counters.<writer>.json``: a header line (format version, the
byte offset each log file had reached, the number of keys), then JSON lines of at most 5,000
``[key, [value, expires_at]]`` entries each; a worker thread encoding a million keys in one call
would hold the interpreter lock for a long stall of the event loop. A file is replaced
atomically (temporary file, fsync, rename, fsync of the folder): a crash leaves the old one or
the new one, and a torn or foreign file is refused whole (the key count must match).

Per-reader frequency caps are among the keys, so erasing a reader rewrites the file too.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

CHUNK = 5000  # keys per line
FILE_GLOB = "counters.*.json"


class CheckpointError(ValueError):
    """The file is not a complete checkpoint."""


def path_for(event_dir: str | Path, writer: str) -> Path:
    return Path(event_dir) / f"counters.{writer}.json"


def write(path: Path, header: dict, counters: dict[str, tuple[float, float]]) -> None:
    """Replace ``path`` with ``header`` (plus the key count) and ``counters``."""
    replace(path, encoded(header, counters))


def encoded(header: dict, counters: dict[str, tuple[float, float]]) -> Iterator[bytes]:
    """The file's lines, one at a time: the server encodes one per step of its event loop."""
    yield orjson.dumps({**header, "keys": len(counters)}) + b"\n"
    entries = iter(counters.items())
    while chunk := list(itertools.islice(entries, CHUNK)):
        yield orjson.dumps(chunk) + b"\n"


def replace(path: Path, lines: Iterable[bytes]) -> None:
    """Make ``lines`` the content of ``path`` atomically."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".counters-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def read(path: Path) -> tuple[dict, list]:
    """The header and the ``[key, [value, expires_at]]`` entries; FileNotFoundError or
    CheckpointError."""
    try:
        header, *chunks = (orjson.loads(line) for line in path.read_bytes().splitlines())
        entries = [entry for chunk in chunks for entry in chunk]
        if header["keys"] != len(entries):
            raise CheckpointError(f"{len(entries)} keys of {header['keys']}")
        return header, entries
    except (ValueError, KeyError, TypeError) as exc:  # JSON errors are ValueErrors
        raise CheckpointError(str(exc)) from exc


def erase(event_dir: str | Path, named: Callable[[str], bool]) -> list[str]:
    """Remove the keys ``named`` selects from every checkpoint of ``event_dir``; the removed keys."""
    removed: list[str] = []
    for path in sorted(Path(event_dir).glob(FILE_GLOB)):
        header, entries = read(path)
        kept = {key: tuple(entry) for key, entry in entries if not named(key)}
        if len(kept) < len(entries):
            removed += [key for key, _entry in entries if named(key)]
            write(path, header, kept)
    return removed
