"""Noticing changed files: a polling watcher (portable, no inotify dependency) and SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable, Iterable

log = logging.getLogger("adserve.reload")


def fingerprint(paths: Iterable[Path]) -> tuple:
    """What changes when a file is edited, added or removed."""
    out = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class Watcher:
    """Calls ``on_change`` when ``list_paths``' fingerprint changes, or when ``trigger`` is called."""

    def __init__(self, list_paths: Callable[[], Iterable[Path]],
                 on_change: Callable[[], Awaitable[None]], interval: float = 1.0) -> None:
        self._list_paths = list_paths
        self._on_change = on_change
        self._interval = interval
        self._wake = asyncio.Event()
        self._seen = fingerprint(list_paths())

    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.TimeoutError:
                pass
            forced = self._wake.is_set()
            self._wake.clear()
            current = await asyncio.to_thread(lambda: fingerprint(self._list_paths()))
            if forced or current != self._seen:
                self._seen = current
                try:
                    await self._on_change()
                except Exception:  # a failed reload must never stop the watching
                    log.exception("reload failed")
