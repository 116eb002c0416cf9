"""What a restart brings back: reader history, popularity, the site's hourly traffic (for pacing)
and the embedded store's counters.

Lifetime counters (flight budgets, flight caps) can be months old, so they are not rebuilt from
the whole log at every start: the counter checkpoint (``checkpoint.py``) holds every key of the
embedded store with its expiry and the byte offset each log file had reached; a start loads it and
replays only the log after those offsets. It is written every minute and at shutdown. Without a
readable checkpoint (a log older than checkpoints) the whole log is read once. A shared store
(Redis) keeps its own counters and gets no checkpoint; when it comes back empty, ``rebuild``
reads the whole log into a ``Replayed`` for it.

The snapshot's moment and the offsets are taken together on the event-loop thread, where the
tracker settles a hit with the embedded store and then logs it without yielding in between (the
store's calls never suspend): every logged hit before the offsets is in the snapshot, every one
after is replayed. A hit billed before the snapshot but logged after it (its first write failed,
a retry logged it) has its billing outcome in the snapshot, so it is not charged again.
Reservations are not saved: a snapshot leaves out what open reservations hold, so after a
restart their pixels are billed as late ones, if their limits still fit. The rest of a
checkpoint (taking those holds out of the copy, encoding it) runs a slice per step of the loop,
so that a busy store never stalls the answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from pathlib import Path

from .. import checkpoint
from ..decision import Decider, bill_key
from ..events import (EventSink, StreamUnreachable, local_copy, log_files, log_sizes, open_reader,
                      read_events)
from ..ledger import Ledger
from ..recs.recommender import Recommender
from ..state import MemoryState, Replayed, StateStore
from . import gcpolicy, tracking

log = logging.getLogger("adserve.replay")
RECENT_DAYS = 7      # reader history and popularity look this far back
CHECKPOINT_SECONDS = 60
WARMED = frozenset({"decision", "click", "impression"})
CHARGED = frozenset({"click", "impression"})


class Replay:
    def __init__(self, events: EventSink, state: StateStore, recommender: Recommender,
                 token_ttl: int, clock) -> None:
        self.folder = events.folder.resolve()  # the working folder may change before shutdown
        self.source = events.source if isinstance(events.source, str) else self.folder
        #: the folders of event files on this host: the log (or the stream's spool and copy)
        self.folders = [self.folder]
        if isinstance(self.source, str):
            self.folders.append(local_copy(self.source, self.folder))
        self.state = state
        self.recommender = recommender
        self.token_ttl = token_ttl
        self.clock = clock
        self.checkpoint = checkpoint.path_for(self.folder, events.writer)
        self.traffic: Counter[int] = Counter()  # page views per Unix hour (ts // 3600), recent days

    def run(self, decider: Decider) -> int:
        """Warm in-process state at start-up; the number of events read for reader history."""
        since = (self.clock() - dt.timedelta(days=RECENT_DAYS)).date()
        warmed = 0
        for event in read_events(log_files(self.history(), since), types=WARMED):
            item = event.get("page") if event["type"] == "decision" else event.get("item")
            ts = float(event["ts"])
            if event["type"] == "decision":
                self.traffic[int(ts // 3600)] += 1
            if event["type"] == "decision" or event.get("counted"):
                self.recommender.record(event["type"], event.get("user"), item, ts)
            warmed += 1
        if isinstance(self.state, MemoryState):
            self._restore_counters(decider)
        return warmed

    def _restore_counters(self, decider: Decider) -> None:
        done, counters = self._load()
        self.state.load_snapshot(counters)
        self._replay(decider, self.state, self.folder, done)

    def rebuild(self, decider: Decider) -> Replayed:
        """Every counter and token mark of the whole log, for a shared store that lost its data."""
        replayed = Replayed()
        self._replay(decider, replayed, self.history(), {})
        return replayed

    def history(self) -> Path:
        """Every replica's events as a folder: the log folder, or the stream's copy brought up to
        date (as it last was, when the stream cannot be reached)."""
        try:
            return open_reader(self.source, self.folders[-1])
        except StreamUnreachable as exc:
            log.error("%s: reading the copy of the stream exported before", exc)
            return self.folders[-1]

    def _replay(self, decider: Decider, counters: MemoryState | Replayed, folder: Path,
                done: dict[str, int]) -> None:
        """Charge the counted hits logged in ``folder`` after the offsets ``done`` to ``counters``.

        A ledger of its own: a rebuild runs in a worker thread beside the serving one.
        """
        ledger = Ledger(decider.ledger.tz.key, self.traffic)
        files = [path for path in log_files(folder) if path.stat().st_size > done.get(path.name, 0)]
        for event in read_events(files, types=CHARGED, skip=done):
            if event.get("counted"):
                self._charge(event, decider, ledger, counters)

    def _load(self) -> tuple[dict[str, int], list]:
        """The log offsets and the counters of the checkpoint; none when there is no readable one."""
        try:
            header, counters = checkpoint.read(self.checkpoint)
            return header["logs"], counters
        except FileNotFoundError:
            return {}, []
        except (OSError, KeyError, checkpoint.CheckpointError) as exc:
            log.error("counter checkpoint %s unreadable (%s): replaying the whole log", self.checkpoint, exc)
            return {}, []

    def _charge(self, event: dict, decider: Decider, ledger: Ledger, counters: MemoryState | Replayed) -> None:
        ts = float(event["ts"])
        if event.get("token"):
            counters.mark(tracking.token_key(event["type"], event["token"]), self.token_ttl, ts)
        campaign = decider.inventory.campaigns.get(event.get("campaign"))
        billable = event.get("billable", True)  # logs from before the field: every counted hit
        billed = isinstance(counters, MemoryState) and counters.has(bill_key(event["type"], event.get("token")))
        if campaign is not None and billable and not billed:  # billed: already in the checkpoint
            moment = ledger.moment(dt.datetime.fromtimestamp(ts, dt.timezone.utc))
            charges = ledger.charge(campaign, event["type"], event.get("user"), moment)
            if charges is not None:  # what the tracker billed: the ledger's counters and the variant's
                counters.seed(charges + decider.allocation.counters(event), ts)

    # -- checkpoint ---------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint now (at shutdown)."""
        if isinstance(self.state, MemoryState):
            checkpoint.write(self.checkpoint, self._header(), self.state.snapshot())

    async def save_forever(self, interval: float = CHECKPOINT_SECONDS) -> None:
        while isinstance(self.state, MemoryState):
            await asyncio.sleep(interval)
            await self.write_checkpoint()

    async def write_checkpoint(self) -> None:
        """Take the moment, then finish the copy and encode it a slice per step of the loop, so
        answers keep flowing meanwhile; only the writing goes to a worker thread (Python there
        would hold the interpreter lock as long, and the loop would wait for it)."""
        with gcpolicy.paused():  # the copy is gone before collections resume
            lines = await self._encoded()
        await asyncio.to_thread(checkpoint.replace, self.checkpoint, lines)

    async def _encoded(self) -> list[bytes]:
        header = self._header()
        counters, steps = self.state.capture()  # the same moment as the header's offsets
        for _ in steps:
            await asyncio.sleep(0)
        lines = []
        for line in checkpoint.encoded(header, counters):
            lines.append(line)
            await asyncio.sleep(0)
        return lines

    def _header(self) -> dict:
        """The log offsets: taken with the store's copy, in one step (see the module docstring)."""
        return {"version": 1, "saved_at": self.clock().timestamp(), "logs": log_sizes(self.folder)}
