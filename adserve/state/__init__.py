"""Counters, reservations and one-time marks behind a small interface: in-process, or Redis for replicas.

A decision hands the store every need's ranked options at once (``reserve``): the store picks,
per need, the first option whose limits all fit and reserves its impression counters, in one
atomic step (one Lua call on Redis), so concurrent pages cannot all take the last impression.
A pixel confirms its reservation, or, once it has expired, is charged only if its limits still
fit (``settle``). Reservations never confirmed are released after the hold time. The stores
only store: ``ledger.py`` says which counters exist and what bounds them.

``base`` holds the contract (``StateStore``) and the walk both stores make; ``memory`` the
embedded store, ``redis`` the shared one. tests/test_state.py runs the contract against both.
"""

from .base import CUT, Option, Replayed, StateStore, StateUnavailable, choose, claim
from .memory import MemoryState
from .redis import RedisState

__all__ = ["CUT", "MemoryState", "Option", "RedisState", "Replayed", "StateStore", "StateUnavailable", "choose", "claim"]
