"""The garbage collector's policy in a serving process: a full collection walks only what is new.

A full collection walks every container the collector tracks and stops the event loop meanwhile.
What start-up loads (catalog, model, config, replayed counters) lives as long as the process, so
it is frozen out of the collector's sight at start (before: 120-190 ms pauses every few seconds
under load). Serving builds long-lived containers of its own, which the start-up freeze misses:
the embedded store's lists of keys by expiry minute (a day of reader caps) and of reservations
by release second (five minutes of answers). Walked by every full collection, they make its
pause grow with traffic and uptime (7-42 ms of CPU within 100 s of load). So the survivors of
each full collection are frozen too, and the next one walks only what was promoted since. (The
store's tables are a dict subclass so that they stay tracked and frozen: see ``state/memory.py``.)

A frozen object is still freed by reference counting, but never as cyclic garbage: what was alive
at a freeze and later dies in a cycle (a connection, a request in flight) stays (about 100 objects
a freeze, measured under load). So every ``LOOK_AGAIN_SECONDS`` the survivors are given back to
the collector instead, and the next full collection frees that garbage: one full walk of
everything an hour.
"""

from __future__ import annotations

import contextlib
import gc
import time
from typing import Iterator

LOOK_AGAIN_SECONDS = 3600.0  # how long cyclic garbage that was alive at a freeze may stay
OLDEST = 2  # the generation a full collection collects


class FreezeSurvivors:
    """A ``gc.callbacks`` entry: freeze what each full collection leaves, except once every
    ``look_again`` seconds, when everything frozen goes back to the collector."""

    def __init__(self, look_again: float = LOOK_AGAIN_SECONDS, clock=time.monotonic) -> None:
        self.look_again = look_again
        self.clock = clock
        self.looked_at = clock()

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info["generation"] != OLDEST:
            return
        if self.clock() - self.looked_at < self.look_again:
            gc.freeze()
        else:
            self.looked_at = self.clock()
            gc.unfreeze()


def start() -> None:
    """At the end of start-up: freeze what it loaded, then the survivors of each full collection."""
    gc.freeze()
    gc.callbacks.append(FreezeSurvivors())


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection meanwhile: for a big short-lived container (a checkpoint's copy of
    the store), which each collection would walk whole while it lives. Garbage waits until the
    end; so does nothing else."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
