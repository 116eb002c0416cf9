"""Event ids: what lets a reader drop the second copy of an event delivered at least once.

An id is the writer's name, the moment its sink was opened (ms, hex) and a sequence number: unique
across replicas (each has its own writer name) and restarts, and costs one counter increment.
"""

from __future__ import annotations

import itertools
import time


class EventIds:
    def __init__(self, writer: str, clock=time.time) -> None:
        self._prefix = f"{writer}:{int(clock() * 1000):x}:"
        self._sequence = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._sequence)}"
