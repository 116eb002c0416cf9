"""The link to a shared state store: noticing an outage, reconnecting, repairing what it missed.

While Redis is down, pages are answered without limited campaigns and hits are logged with
``counted: null``. When the store is back, two things are owed: an empty store (a Redis restarted
without its data) is rebuilt from the whole event log, and this writer's undecided hits are
settled once each. While the rebuild is under way the store stays down on every replica (see
``RedisState.open``): pages are answered without limited campaigns and hits are logged undecided,
as in an outage, since a hit settled against counters not yet rebuilt could bill past a cap that
the log had filled. Keeping it here leaves the app to wiring, and keeps the one piece of code
that decides "the store is back" in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from ..events import EventSink, LogUnavailable
from ..serving import Runtime
from ..state import MemoryState, StateStore, StateUnavailable
from .replay import Replay
from .tracking import Tracker

log = logging.getLogger("adserve")
TRACKED = frozenset({"click", "impression"})


class StateLink:
    def __init__(self, state: StateStore, replay: Replay, events: EventSink, tracker: Tracker,
                 runtime: Callable[[], Runtime], clock) -> None:
        self.state = state
        self.replay = replay
        self.events = events
        self.tracker = tracker
        self.runtime = runtime  # read at each use: a reload swaps the runtime
        self.clock = clock
        self.down_since: float | None = None  # when the watcher first saw the store down

    async def connect(self) -> None:
        """(Re)connect the store. If it comes back empty, rebuild its counters and token marks from
        the log; then settle the hits logged while it was down. Raises StateUnavailable while it
        still cannot be reached, or another replica is rebuilding it."""
        if await self.state.open() and not isinstance(self.state, MemoryState):
            replayed = await asyncio.to_thread(self.replay.rebuild, self.runtime().decider)
            await self.state.restore(replayed)
            log.warning("state store was empty: rebuilt %d counts and %d token marks from the event log",
                        len(replayed.counts), len(replayed.marks))
        if self.down_since is not None:
            await self.reconcile(self.down_since - 60)  # a minute early: hits deferred before it was noticed
            self.down_since = None  # only once settled: a failed reconcile is tried again

    async def reconcile(self, since: float) -> None:
        """Settle this writer's hits logged undecided (``counted`` null) since ``since``, once each."""
        events = await self.events.recent(since, TRACKED)
        settled = {(e["type"], e.get("token")) for e in events if e.get("reconciled")}
        for event in events:
            if "counted" in event and event["counted"] is None \
                    and (event["type"], event.get("token")) not in settled:
                await self.tracker.reconcile(event, self.runtime())

    async def watch(self, every: float = 1.0) -> None:
        """Notice an outage of the store, and reconnect (and reconcile) when it is back."""
        while True:
            await asyncio.sleep(every)
            if getattr(self.state, "down", False):
                if self.down_since is None:
                    self.down_since = self.clock().timestamp()
                with contextlib.suppress(StateUnavailable, LogUnavailable):  # next round tries again
                    await self.connect()
