"""The collector's policy in a serving process: full collections walk only what is new."""

from __future__ import annotations

import gc
import weakref

import pytest

from adserve.server.gcpolicy import LOOK_AGAIN_SECONDS, FreezeSurvivors


@pytest.fixture
def policy():
    now = [0.0]
    policy = FreezeSurvivors(clock=lambda: now[0])
    policy.now = now
    gc.callbacks.append(policy)
    yield policy
    gc.callbacks.remove(policy)
    gc.unfreeze()


def walked() -> set[int]:
    """What a full collection walks now: every tracked object but the frozen ones."""
    return {id(thing) for thing in gc.get_objects()}


def test_a_full_collection_walks_only_what_came_after_the_last_one(policy):
    """Open reservations and expiry lists, built while serving, live for minutes to a day: a full
    collection that walked them all each time paused longer as traffic grew."""
    long_lived = [[n] for n in range(1000)]
    gc.collect()
    newer = [[n] for n in range(10)]
    assert not {id(thing) for thing in long_lived} & walked()
    assert {id(thing) for thing in newer} <= walked()


class Node:
    pass


def test_garbage_that_was_alive_at_a_freeze_is_freed_within_the_hour(policy):
    """Frozen, an object in a cycle outlives its last reference; the hourly look frees it."""
    node = Node()
    node.itself = node
    alive = weakref.ref(node)
    gc.collect()
    del node
    gc.collect()
    assert alive() is not None  # frozen garbage
    policy.now[0] += LOOK_AGAIN_SECONDS
    gc.collect()  # ends by handing the frozen objects back
    gc.collect()
    assert alive() is None


def test_the_embedded_stores_tables_stay_frozen_as_they_grow(policy):
    """The store's dicts hold only tuples the collector stops tracking. An exact dict of such
    values is untracked by a full collection too, so it missed the freeze; the next insert tracked
    it again as a young object, and the collections after walked every key (17-19 ms a million)."""
    from adserve.ledger import Limit
    from adserve.state.memory import MemoryState

    store = MemoryState(clock=lambda: 1000.0)
    for n in range(200):
        store.mark(f"mark:{n}", 3600, 1000.0)
        store._reserved[f"r{n}"] = store._add([Limit(f"cap:{n}", 3, 1.0, "impression", 3600)], 1000.0)
    gc.collect()
    store.mark("mark:new", 3600, 1000.0)
    store._reserved["r-new"] = ("cap:new", 1.0)
    assert not {id(store._values), id(store._reserved)} & walked()
