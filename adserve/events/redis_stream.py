"""The Redis Streams sink: every replica appends to one stream; its local files are only a spool.

A write is one XADD (a field ``e``, the event's JSON line, and ``w``, the writer) that also trims
entries older than ``server.retention_days`` (``MINID ~``: Redis drops whole blocks, so trimming
costs the append nothing). Writes go down the process's one pipelined connection (``redis_pipe``):
none waits for another's reply, and the writes of one turn of the loop leave in one syscall. The
event records what the counters decided (counted, billable, the slots filled), so it is written
after the counter scripts, not pipelined with them.

The ack promise: a write returns once its events are in the stream or in the spool (the file
sink's files, with its fsync). An XADD that fails (Redis gone, a timeout) writes the same lines,
with the same ids, to the spool before the answer; from then on the sink is ``down`` and writes go
straight to the spool, never waiting on Redis, until ``sync_forever`` has shipped every spooled
line to the stream. An XADD that reached Redis but whose reply was lost is spooled and shipped
again: the stream then holds two copies with one ``event_id``, and readers keep the first.

How far the spool is shipped lives in ``stream-shipped.<writer>.json`` (bytes per file), saved
after each batch: a crash between a batch and its save ships that batch again, never loses it.
The stream is as durable as its Redis: run it with ``appendonly yes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

import orjson

from ..iowait import waited_on
from .files import EventLog, LogUnavailable, first_copies, log_files, serialised
from .ids import EventIds

log = logging.getLogger("adserve.events")
STREAM_KEY = "adserve:events"
SHIP_BYTES = 1 << 20  # spool read per shipping round trip


class StreamSink:
    def __init__(self, url: str, spool: EventLog, retention_days: int | None = None,
                 key: str = STREAM_KEY, clock=time.time, wait: float = 1.0) -> None:
        from redis.exceptions import RedisError  # optional dependency, only for multi-replica setups

        from ..redis_pipe import Pipe

        self._redis = Pipe(url, wait)
        self._faults = (RedisError, OSError)
        self.key = key
        self.source = url
        self.spool = spool
        self.writer = spool.writer
        self.folder = spool.folder
        self._clock = clock
        self._ids = EventIds(self.writer, clock)
        self._keep_ms = retention_days * 86_400_000 if retention_days else None
        self._shipped_path = self.folder / f"stream-shipped.{self.writer}.json"
        self._shipped = self._load_shipped()
        self.down = any(size > done for _, done, size in self._spooled())  # ship what a crash left

    @property
    def failing(self) -> bool:
        return self.down and self.spool.failing

    async def write(self, *events: dict) -> None:
        now = self._clock()
        lines = serialised(events, self._ids, now)
        if not self.down:
            try:
                await waited_on(self._send(lines, now))
                return
            except self._faults as exc:
                if not self.down:  # concurrent writes fail together: say it once
                    log.error("event stream unreachable, spooling to %s until it is back: %s", self.folder, exc)
                self.down = True
        self.spool.append_lines(events[0].get("ts", now), b"".join(lines))

    async def recent(self, since: float, types: frozenset[str]) -> list[dict]:
        """From the spool and from the stream (whose entry ids start with Redis's clock, in ms)."""
        found = await self.spool.recent(since, types)
        start = str(int(since * 1000))
        try:
            while entries := await self._redis.call(b"XRANGE", self.key, start, b"+", b"COUNT", 1000):
                for _, pairs in entries:
                    fields = dict(zip(pairs[::2], pairs[1::2]))
                    if fields[b"w"].decode() == self.writer:
                        event = orjson.loads(fields[b"e"])
                        if event["type"] in types and event["ts"] >= since:
                            found.append(event)
                start = "(" + entries[-1][0].decode()
        except self._faults as exc:
            raise LogUnavailable(f"event stream: {exc}") from exc
        return first_copies(found)

    async def _send(self, lines: list[bytes], now: float) -> None:
        """One round trip for any number of lines."""
        trim = (b"MINID", b"~", int(now * 1000) - self._keep_ms) if self._keep_ms else ()
        commands = [(b"XADD", self.key, *trim, b"*", b"w", self.writer, b"e", line) for line in lines]
        if len(commands) == 1:
            await self._redis.call(*commands[0])
        else:
            await self._redis.call_many(commands)

    async def sync_forever(self, interval: float = 0.2) -> None:
        """fsync the spool in batches; while down, ship it whenever the stream answers again."""
        while True:
            await self.spool.flush()
            if self.down:
                with contextlib.suppress(*self._faults):
                    await self.ship()
            await asyncio.sleep(interval)

    async def ship(self) -> None:
        """Copy every spooled line to the stream, batch by batch; then writes go to it again.

        The last look at the spool and the switch back happen without yielding, so a write
        cannot land in the spool after it was found empty.
        """
        while batch := self._unshipped():
            lines = [line for _, _, chunk in batch for line in chunk]
            if lines:
                await self._send(lines, self._clock())
            self._shipped.update({name: end for name, end, _ in batch})
            self._save_shipped()
        if self.down:
            log.info("event stream reachable again: spool shipped")
        self.down = False

    def _spooled(self) -> list[tuple[Path, int, int]]:
        """This writer's spool files: (path, bytes shipped, size)."""
        return [(path, self._shipped.get(path.name, 0), path.stat().st_size)
                for path in log_files(self.folder) if path.name.endswith(f".{self.writer}.jsonl")]

    def _unshipped(self) -> list[tuple[str, int, list[bytes]]]:
        """The next whole lines not shipped yet, about ``SHIP_BYTES`` of them: (file, end, lines).

        A line that does not parse (torn by a crash mid-write) is passed over, as readers do.
        """
        batch, budget = [], SHIP_BYTES
        for path, done, size in self._spooled():
            if size <= done or budget <= 0:
                continue
            with open(path, "rb") as f:
                f.seek(done)
                data = f.read(budget)
                whole = data[:data.rfind(b"\n") + 1]
                if not whole and len(data) == budget:  # one line longer than the budget
                    f.seek(done)
                    whole = f.readline()
            if whole:  # else a torn last line, ended when the spool is next written
                batch.append((path.name, done + len(whole),
                              [line + b"\n" for line in whole.splitlines() if _parses(line)]))
                budget -= len(whole)
        return batch

    def _load_shipped(self) -> dict[str, int]:
        """Where shipping got to; on the first start, files already here (a file sink's log
        from before the stream) count as shipped: they stay local, as they were."""
        try:
            return orjson.loads(self._shipped_path.read_bytes())
        except FileNotFoundError:
            self._shipped = {path.name: path.stat().st_size for path in log_files(self.folder)
                             if path.name.endswith(f".{self.writer}.jsonl")}
            self._save_shipped()
            return self._shipped

    def _save_shipped(self) -> None:
        """Replace the position file whole (write, fsync, rename): never half a position."""
        present = {path.name for path in log_files(self.folder)}
        self._shipped = {name: end for name, end in self._shipped.items() if name in present}
        partial = self._shipped_path.with_suffix(".tmp")
        with open(partial, "wb") as f:
            f.write(orjson.dumps(self._shipped))
            f.flush()
            os.fsync(f.fileno())
        partial.replace(self._shipped_path)

    async def aclose(self) -> None:
        self.spool.close()
        await self._redis.close()


def erase_reader(url: str, reader: str, key: str = STREAM_KEY) -> int:
    """Take ``reader``'s id out of the stream's events; how many were changed.

    A stream entry cannot be edited: each is deleted and added again with ``user`` null and its
    own ``event_id`` (totals stay; an exporter that copied the original before drops the new copy
    as a repeat, so its archive keeps the id). Re-added entries come at the end, already erased.
    """
    import redis

    value = orjson.dumps(reader)
    erased, start = 0, "-"
    with redis.Redis.from_url(url) as client:
        while entries := client.xrange(key, min=start, count=1000):
            pipe = client.pipeline(transaction=False)
            for entry_id, fields in entries:
                if value in fields[b"e"] and (event := orjson.loads(fields[b"e"])).get("user") == reader:
                    pipe.xdel(key, entry_id)
                    pipe.xadd(key, {"w": fields[b"w"], "e": orjson.dumps({**event, "user": None},
                                                                          option=orjson.OPT_APPEND_NEWLINE)})
                    erased += 1
            pipe.execute()
            start = "(" + entries[-1][0].decode()
    return erased


def _parses(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False
