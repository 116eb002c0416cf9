"""Catalog changes shared by every worker and replica, through the state store.

A CMS upsert or a discovered article lands in the one process that received it (and its journal,
read again only at start). Every other worker and replica must serve it too, so each change is
also published on a feed in the shared store (a Redis stream keeping about the last 100,000
changes) that every process follows, its own changes included: all of them then apply the
changes in the feed's one order, and two upserts of one item end the same everywhere. A process
that starts reads the whole kept feed after its journal. Changes made while the store is down
wait here (up to ``MAX_WAITING``) and are published once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import asdict

import orjson

from ..catalog import Catalog, CatalogError, Item, item_from_dict
from ..state import StateStore, StateUnavailable

log = logging.getLogger("adserve.catalog")
FEED = "catalog"
MAX_WAITING = 10_000  # unpublished changes kept while the store is down; the oldest go first


class CatalogFeed:
    def __init__(self, catalog: Catalog, state: StateStore, every: float = 0.5) -> None:
        self.catalog = catalog
        self.state = state
        self.every = every  # seconds between reads of the feed: how late other processes may be
        self.position = "0"
        self._waiting: deque[bytes] = deque(maxlen=MAX_WAITING)
        self._wake = asyncio.Event()
        catalog.on_change = self._changed

    def _changed(self, item: Item) -> None:
        self._waiting.append(orjson.dumps(asdict(item)))
        self._wake.set()

    async def sync(self) -> None:
        """Publish the changes made here, then apply every change published since the last call."""
        while self._waiting:
            await self.state.publish(FEED, self._waiting[0])
            self._waiting.popleft()
        while True:
            self.position, changes = await self.state.follow(FEED, self.position)
            for raw in changes:
                try:
                    self.catalog.upsert(item_from_dict(orjson.loads(raw)), persist=False)
                except (orjson.JSONDecodeError, CatalogError) as exc:
                    log.error("catalog feed: change skipped: %s", exc)
            if not changes:
                return

    async def run(self) -> None:
        """Sync forever: at once after a change made here, else every ``every`` seconds."""
        while True:
            try:
                await self.sync()
            except StateUnavailable:
                pass  # the state link notices and reconnects; changes wait meanwhile
            if asyncio.current_task().cancelling():  # redis-py swallowed a cancel mid-command
                raise asyncio.CancelledError
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._wake.wait()
