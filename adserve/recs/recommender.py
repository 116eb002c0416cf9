"""Recommendation serving: table lookups, never a model call per request.

Strategies fall back down one chain, personal -> related -> popular; an answer names the first
strategy that produced items and is topped up from the next ones. The current article, items the
reader already clicked and items already on the page are never shown, and only live catalog items
are. A share of each widget goes to fresh articles that have had no time to collect clicks.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from ..catalog import Catalog
from ..model import Recs
from .artifact import ModelArtifact
from .popularity import Popularity

CHAINS = {"personal": ("personal", "related", "popular"),
          "related": ("related", "popular"),
          "popular": ("popular",)}
HISTORY_LENGTH = 50
HISTORY_READERS = 200_000  # readers whose recent clicks are kept in memory (least recent dropped)
FOLD_IN_CACHE = 10_000
FRESH_REFRESH_SECONDS = 30.0
NEWEST = 200
CANDIDATES_KEPT = 20_000  # readers' and articles' current candidates remembered, least recently used dropped


@dataclass
class Recommendation:
    items: list[str]
    strategy: str


@dataclass(slots=True)
class Candidates:
    """A model's list for one reader or article, less the articles too old to show.

    A widget's lookup, age check included, costs several times its weight inside the page loop
    (the catalog's and the model's rows are out of the CPU caches), and returning readers and
    popular articles ask for the same list again and again. Kept by its model (a swap starts
    afresh) and reused while the catalog and the age cutoff stay where it was worked out: an
    upsert or an article ageing out (the cutoff passing ``until``) shows at once.
    """
    catalog_version: int
    since: float  # the age cutoff it was worked out at (Unix seconds)
    until: float  # the cutoff past which its oldest article is too old
    items: list[str]

    def holds(self, catalog_version: int, cutoff: float) -> bool:
        return self.catalog_version == catalog_version and self.since <= cutoff <= self.until


class LoadedModel:
    """An artifact plus the lookups built from it once, when it is loaded."""

    def __init__(self, artifact: ModelArtifact, recs: Recs) -> None:
        self.artifact = artifact
        self.item_ids = artifact.item_ids.tolist()
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.user_index = {user: u for u, user in enumerate(artifact.user_ids.tolist())}
        self.fold_in_ok = artifact.meta.get("params", {}).get("algorithm", "als") == "als"
        factors = artifact.item_factors.astype(np.float64)
        k = factors.shape[1]
        self._gram = factors.T @ factors + recs.regularization * np.eye(k)
        self._confidence = recs.alpha * recs.click_weight
        self._folded: OrderedDict[tuple, list[str]] = OrderedDict()
        self._n = artifact.user_top.shape[1] if artifact.user_top.ndim == 2 else 0
        # which readers have a table row, a byte each: read per widget without a numpy scalar
        # (indexing and comparing one costs about a microsecond)
        self._tabled = (artifact.user_top[:, 0] >= 0).tobytes() if self._n else b""
        # the recommender's, per model: a swap (made in a loader thread) leaves the serving one alone
        self.candidates: OrderedDict[tuple, Candidates] = OrderedDict()

    def _ids(self, row: np.ndarray) -> list[str]:
        ids = self.item_ids
        return [ids[j] for j in row.tolist() if j >= 0]

    def personal(self, user: str | None, history: tuple[str, ...]) -> list[str] | None:
        """The reader's table row; a reader without one (not active lately) scored from their
        factors; a reader newer than the model folded in from their clicks."""
        u = self.user_index.get(user) if user else None
        if u is not None and self._tabled[u]:
            return self._ids(self.artifact.user_top[u])
        if u is not None:
            return self._best(("reader", u), self.artifact.user_factors[u], ())
        return self.fold_in(history) if history else None

    def fold_in(self, history: tuple[str, ...]) -> list[str] | None:
        """A reader newer than the model: solve ALS's user step for their recent clicks."""
        known = tuple(sorted({self.item_index[i] for i in history if i in self.item_index}))
        if not known or not self.fold_in_ok:
            return None
        if known in self._folded:
            self._folded.move_to_end(known)
            return self._folded[known]
        y = self.artifact.item_factors[list(known)].astype(np.float64)
        a = self._gram + self._confidence * (y.T @ y)
        b = (1.0 + self._confidence) * y.sum(axis=0)
        return self._best(known, np.linalg.solve(a, b).astype(np.float32), known)

    def _best(self, key: tuple, factors: np.ndarray, exclude: tuple[int, ...]) -> list[str]:
        """The top items for a reader's factors (one product over the catalog), cached by ``key``."""
        if key in self._folded:
            self._folded.move_to_end(key)
            return self._folded[key]
        scores = self.artifact.item_factors @ factors
        scores[list(exclude)] = -np.inf
        n = min(self._n or 50, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        result = self._ids(best[np.argsort(-scores[best])])
        self._folded[key] = result
        if len(self._folded) > FOLD_IN_CACHE:
            self._folded.popitem(last=False)
        return result

    def related(self, item: str | None) -> list[str] | None:
        """The article's neighbours (empty when it has none: a row of -1)."""
        i = self.item_index.get(item) if item else None
        return None if i is None else self._ids(self.artifact.item_neighbors[i])


class Recommender:
    def __init__(self, catalog: Catalog, recs: Recs, rng: random.Random | None = None,
                 clock=time.time) -> None:
        self.catalog = catalog
        self.recs = recs
        self.model: LoadedModel | None = None
        self.popularity = Popularity(recs.popularity_half_life_hours)
        self.history: OrderedDict[str, deque[str]] = OrderedDict()  # least recently active first
        self.rng = rng or random.Random()
        self._clock = clock
        self._fresh: list[str] = []
        self._fresh_position: tuple[list[str], dict[str, int]] = ([], {})  # a fresh list, its items' indices
        self._newest: list[str] = []
        self._fresh_at = -1e18

    def use_model(self, artifact: ModelArtifact) -> None:
        """Swap in a new model; requests in flight keep the one they started with."""
        self.model = LoadedModel(artifact, self.recs)

    def record(self, kind: str, user: str | None, item: str | None, ts: float) -> None:
        """Feed one engagement: a read (``decision``) or a click on a recommended item.

        Both heat the item's popularity; clicks also join the reader's history (excluded from
        their widgets, and the input of fold-in for readers newer than the model). Only catalog
        items count: any id a page request names would otherwise grow the tables without bound.
        """
        if not item or item not in self.catalog.items:
            return
        self.popularity.add(item, ts)
        if kind == "click" and user:
            self.history.setdefault(user, deque(maxlen=HISTORY_LENGTH)).append(item)
            self.history.move_to_end(user)
            if len(self.history) > HISTORY_READERS:
                self.history.popitem(last=False)

    def recommend(self, strategy: str, user: str | None, page_item: str | None, count: int,
                  exclude: set[str]) -> Recommendation:
        clicked = self.history.get(user) if user else None
        history = tuple(clicked) if clicked else ()
        banned = set(exclude)
        banned.update(history)
        if page_item:
            banned.add(page_item)
        now = self._clock()  # one reading per widget: its age cutoff and its fresh articles
        model = self.model  # the one this widget started with, whatever a swap does meanwhile
        items = self.catalog.items
        picked: list[str] = []
        used: str | None = None
        for name in CHAINS[strategy]:
            if name == "popular":  # the newest articles fill in when little has been clicked yet
                ranked = itertools.chain(self.popularity.top(), self._recent(now)[1])  # read until a widget is full
            elif (ranked := self._modelled(name, model, user, page_item, history, now)) is None:
                continue
            for item_id in ranked:  # its live, unbanned items up to ``count``
                if len(picked) >= count:
                    break
                if item_id not in banned and (item := items.get(item_id)) is not None and item.live:
                    picked.append(item_id)
                    banned.add(item_id)
                    if used is None:
                        used = name
            if len(picked) >= count:
                break
        self._explore(picked, count, banned, now)
        return Recommendation(picked, used or "popular")

    def _modelled(self, name: str, model: LoadedModel | None, user, page_item, history,
                  now: float) -> list[str] | None:
        """The model's current candidates for the reader (``personal``) or the article
        (``related``), hottest first; None when it has none."""
        if model is None:
            return None
        # a reader or an article the model has no row for and no clicks to go by: nothing to list
        # (nor remembered), so half the widgets, an anonymous reader's, skip two memo misses
        if name == "personal":
            if not history and user not in model.user_index:
                return None
            key = (name, user, history)
        else:
            if not history and page_item not in model.item_index:
                return None
            key = (name, page_item, history[-1:])
        cutoff = now - self.recs.max_age_hours * 3600
        found = model.candidates.get(key)
        if found is not None and found.holds(self.catalog.version, cutoff):
            model.candidates.move_to_end(key)
        else:
            candidates = (model.personal(user, history) if name == "personal"
                          else model.related(page_item) or (model.related(history[-1]) if history else None))
            if not candidates:  # not remembered: the model's answer is a dict miss already
                return None
            found = self._current(key, model, cutoff, candidates)
        # CF finds what suits the reader; current heat orders it (news goes stale in days), a
        # stable sort: ties keep CF order. Measured on simulated logs (see ``adserve evaluate``):
        # CF order alone loses to plain popularity, CF candidates in heat order beat it clearly.
        return self.popularity.hottest_first(found.items) if found.items else None

    def _current(self, key: tuple, model: LoadedModel, cutoff: float, candidates: list[str]) -> Candidates:
        """The model's ``candidates`` less the articles published before ``cutoff`` (older than
        ``recs.max_age_hours``), remembered under ``key`` for the next widget of that reader or article."""
        items = self.catalog.items
        current, until = [], math.inf
        for item_id in candidates:
            item = items.get(item_id)
            published = None if item is None else item.published
            if published is None:
                current.append(item_id)
            elif published >= cutoff:
                current.append(item_id)
                if published < until:  # not min(): a builtin call per candidate
                    until = published
        found = model.candidates[key] = Candidates(self.catalog.version, cutoff, until, current)
        if len(model.candidates) > CANDIDATES_KEPT:
            model.candidates.popitem(last=False)
        return found

    def _explore(self, picked: list[str], count: int, banned: set[str], now: float) -> None:
        """Give fresh articles their exposure share, at random positions after the first."""
        share = self.recs.explore_share * count
        n = int(share) + (self.rng.random() < share - int(share))
        if not n:
            return
        fresh = self._recent(now)[0]
        if n == 1:  # what widgets below 7 organic items draw at the default share
            chosen = self._fresh_pick(fresh, banned)
        else:
            fresh = [i for i in fresh if i not in banned]
            chosen = self.rng.sample(fresh, min(n, len(fresh)))
        for item in chosen:
            if len(picked) < count:
                picked.append(item)
            else:
                picked[self.rng.choice(range(1, count)) if count > 1 else 0] = item

    def _fresh_pick(self, fresh: list[str], banned: set[str]) -> list[str]:
        """One of the ``fresh`` articles not ``banned`` (none if all are), drawn as ``choice`` draws
        from a copy of them without the banned ones (one ``_randbelow`` of its length), without
        making the copy: the draw indexes what is left and steps past the banned ones' positions.
        A widget's cost so follows its banned articles (about ten), not the day's fresh ones (a
        copy and a membership test each per widget: hundreds on a news site)."""
        listed, where = self._fresh_position
        if listed is not fresh:  # once per fresh list (refreshed every 30 s)
            where = {item: i for i, item in enumerate(fresh)}
            self._fresh_position = (fresh, where)
        if where.keys().isdisjoint(banned):  # half the widgets: none to step past (a test of ~10 keys)
            return [self.rng.choice(fresh)] if fresh else []
        skipped = sorted(map(where.__getitem__, where.keys() & banned))
        if len(skipped) == len(fresh):  # all banned
            return []
        k = self.rng.choice(range(len(fresh) - len(skipped)))
        for position in skipped:
            if position > k:
                break
            k += 1
        return [fresh[k]]

    def fresh_items(self) -> list[str]:
        return self._recent(self._clock())[0]

    def _recent(self, now: float) -> tuple[list[str], list[str]]:
        """(fresh items, the newest live items), asked of the catalog's time index every 30 s."""
        if now - self._fresh_at > FRESH_REFRESH_SECONDS:
            self._fresh = self.catalog.published_since(now - self.recs.fresh_hours * 3600)
            self._newest = self.catalog.newest(NEWEST)
            self._fresh_at = now
        return self._fresh, self._newest
