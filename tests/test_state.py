"""The embedded state store: counters and one-time marks that expire without stalling the loop."""

from __future__ import annotations

from adserve.ledger import Limit
from adserve.state import MemoryState


def count(key: str, amount: float, ttl: int) -> Limit:
    return Limit(key, None, amount, "impression", ttl)


async def test_memory_state_expires_keys_without_a_full_pass():
    now = [1_800_000_000.0]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("cap", 1.0, 120), count("day", 2.0, 86400)], now[0])
    assert await state.first_time("tok", 600) and not await state.first_time("tok", 600)
    assert len(state) == 3
    now[0] += 180
    state.seed([count("day", 1.0, 86400)], now[0])  # any write sweeps what has expired
    assert len(state) == 2 and await state.get_many(["cap", "day"]) == [0.0, 3.0]
    now[0] += 600
    assert await state.first_time("tok", 600)  # its mark expired and was swept
    assert len(state) == 2


async def test_replayed_keys_already_due_are_swept_too():
    now = [1_800_000_000.0]
    state = MemoryState(clock=lambda: now[0])
    state.seed([count("old", 1.0, 60)], now[0] - 3600)  # from an hour-old event
    assert len(state) == 1 and await state.get_many(["old"]) == [0.0]
    now[0] += 120
    state.seed([count("new", 1.0, 60)], now[0])
    assert len(state) == 1
