"""Hot reload: noticing changed files (a polling watcher: portable, no inotify dependency) and
SIGHUP, and applying a changed config folder or model file without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from ..config import LoadResult, config_files, load_config
from ..model import Config
from ..recs.artifact import ArtifactError, ModelArtifact
from ..yamlload import MAX_KEPT

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


class Reloader:
    """Hot reload of the config folder and the model file, and what ``/v1/config/status`` reports.

    A config that fails its check never replaces the one serving; ``apply_config`` is called with
    each good one (the server rebuilds its runtime from it). A model file that cannot be read leaves
    the previous model serving. Both are watched (each worker watches for itself) and reloaded at
    once on ``trigger`` (SIGHUP).
    """

    def __init__(self, config_dir: Path, model_path: Path, loaded: LoadResult,
                 apply_config: Callable[[Config], None], serving: Callable[[], Config],
                 use_model: Callable[[ModelArtifact], None], on_refused: Callable[[], None]) -> None:
        self.config_dir = config_dir
        self.model_path = model_path
        self._apply_config = apply_config
        self._serving = serving
        self._use_model = use_model
        self._on_refused = on_refused
        self.status = {"config": self._config_status(loaded), "model": {"loaded": False}}
        self.load_model()

    def _config_status(self, loaded: LoadResult) -> dict:
        """The last check of the config folder, and what is serving (the last good config).

        Bounded whatever the folder holds: the problems are the loader's capped lists.
        """
        serving = self._serving()
        return {"ok": loaded.ok, "applied": loaded.ok, "checked_at": time.time(),
                "error_count": loaded.problems.counts["error"],
                "warning_count": loaded.problems.counts["warning"],
                "errors": [vars(e) for e in loaded.errors],
                "warnings": [vars(w) for w in loaded.warnings],
                "active_file_count": len(serving.files), "active_files": serving.files[:MAX_KEPT],
                "active_campaigns": len(serving.campaigns)}

    async def reload_config(self) -> None:
        loaded = await asyncio.to_thread(load_config, self.config_dir)
        if loaded.ok:
            self._apply_config(loaded.config)
            log.info("config reloaded: %d campaigns", len(loaded.config.campaigns))
        else:
            self._on_refused()
            log.error("config reload refused, last good config keeps serving:\n%s",
                      "\n".join(map(str, loaded.errors)))
        self.status["config"] = self._config_status(loaded)

    def load_model(self) -> None:
        if not self.model_path.is_file():
            return
        try:
            artifact = ModelArtifact.load(self.model_path)
        except ArtifactError as exc:
            log.error("model refused, previous model keeps serving: %s", exc)
            self.status["model"]["error"] = str(exc)
            return
        self._use_model(artifact)
        log.info("model loaded: %s, trained at %s", self.model_path, artifact.meta.get("trained_at"))
        self.status["model"] = {"loaded": True, "path": str(self.model_path),
                                "trained_at": artifact.meta.get("trained_at"),
                                "data": artifact.meta.get("data"), "offline": artifact.meta.get("offline")}

    async def reload_model(self) -> None:
        await asyncio.to_thread(self.load_model)

    def watchers(self) -> list[Watcher]:
        """The config folder's and the model file's watchers (made in the running loop)."""
        self._watchers = [Watcher(lambda: config_files(self.config_dir), self.reload_config),
                          Watcher(lambda: [self.model_path], self.reload_model)]
        return self._watchers

    def trigger(self) -> None:
        """Reload both now (SIGHUP), whether or not their files changed."""
        for watcher in getattr(self, "_watchers", []):
            watcher.trigger()
