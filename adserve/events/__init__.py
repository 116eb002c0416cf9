"""Where events go, and how any reader gets them back: one ``EventSink`` seam, two sinks.

- ``files.EventLog``, the default: JSON Lines files per UTC day and writer in ``server.event_dir``.
- ``redis_stream.StreamSink`` (``server.events: redis://...``): one Redis stream that every
  replica appends to; the same files serve as its spool while the stream cannot be reached.

Readers (train, evaluate, report) read a folder of daily files; ``open_reader`` makes one out of
a stream (``export.py``), so a reader never needs to know which sink wrote its events.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from .export import StreamUnreachable, export, is_stream, local_copy, open_reader
from .files import (FILE_GLOB, EventLog, LogUnavailable, ReadReport, day_of, first_copies, log_day,
                    log_files, log_sizes, read_events)

__all__ = ["FILE_GLOB", "EventLog", "EventSink", "LogUnavailable", "ReadReport", "StreamUnreachable",
           "day_of", "export", "first_copies", "is_stream", "local_copy", "log_day", "log_files",
           "log_sizes", "open_reader", "open_sink", "read_events"]


class EventSink(Protocol):
    """What the server writes through. An event is acknowledged once ``write`` returned: durable in
    the sink (or its spool) by then, with a new ``event_id``; else ``LogUnavailable`` is raised."""

    writer: str     # this replica's name: its files, and its part of the stream
    folder: Path    # this replica's local files: the whole log, or the stream's spool
    source: str | Path  # what readers open (``open_reader``): the folder, or the stream's URL
    failing: bool   # the last write could be made durable nowhere: the server answers 503

    async def write(self, *events: dict) -> None: ...

    async def recent(self, since: float, types: frozenset[str]) -> list[dict]:
        """This writer's events of ``types`` logged at or after ``since``, each once (what the
        server settles after a state outage); ``LogUnavailable`` when they cannot be read."""

    async def sync_forever(self, interval: float = 0.2) -> None:
        """Background work for the life of the server: batched fsync (and shipping the spool)."""

    async def aclose(self) -> None: ...


def open_sink(event_dir: str | Path, stream: str | None, writer: str, retention_days: int | None = None,
              clock=time.time) -> EventSink:
    """The files in ``event_dir``, or the Redis stream at ``stream`` spooling into them."""
    files = EventLog(event_dir, writer, clock)
    if stream is None:
        return files
    from .redis_stream import StreamSink

    return StreamSink(stream, files, retention_days, clock=clock)
