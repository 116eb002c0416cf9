"""A click simulator with planted tastes: realistic event logs without downloading any data.

Readers have a taste over sections (a sparse Dirichlet draw: most care about one or two), an
activity level, and come back on several days. Articles appear every day with Zipf-like quality
and fade with age. A visit reads an article, sees a widget, and may click an item: more likely
when the item's section matches the reader's taste. A few bots click at random. Events go
through the server's own ``EventLog`` in the server's own format, so training cannot tell them
from production logs, and tests can check that CF recovers the planted tastes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..catalog import Catalog, Item
from ..events import EventLog

SECTIONS = ("politics", "world", "economy", "technology", "science", "culture", "sports", "opinion")
_SUBJECTS = {
    "politics": ["Senate leaders", "The governor", "House moderates", "Campaign aides", "Voters"],
    "world": ["Diplomats", "The envoy", "Border officials", "Allied ministers", "Aid groups"],
    "economy": ["The central bank", "Retailers", "Small lenders", "Port operators", "Farmers"],
    "technology": ["Chip makers", "A startup", "Regulators", "Open-source maintainers", "Carriers"],
    "science": ["Astronomers", "A field team", "Climate modelers", "Geneticists", "Ocean survey"],
    "culture": ["A quiet novel", "The festival", "Museum curators", "A touring band", "Critics"],
    "sports": ["The home side", "A veteran coach", "The league", "A rookie keeper", "Fans"],
    "opinion": ["Our editors", "A former judge", "A city planner", "Two economists", "A reader"],
}
_PREDICATES = ["at a crossroads", "under pressure over the deadline", "after a tough week",
               "in a surprising shift", "on the long road back", "behind closed doors",
               "against the odds", "between two bad options", "at the center of a new fight",
               "ahead of a decisive vote"]


@dataclass(frozen=True)
class SimulationSpec:
    users: int = 1500
    days: int = 14
    initial_items: int = 240
    items_per_day: int = 20
    bots: int = 10
    widget_size: int = 6
    taste_concentration: float = 0.15
    zipf_exponent: float = 0.8
    seed: int = 7


def make_items(spec: SimulationSpec, end: float) -> tuple[list[Item], np.ndarray, np.ndarray]:
    """Articles with ids, sections, publication times and a hidden quality (Zipf-like)."""
    rng = np.random.default_rng(spec.seed)
    start = end - spec.days * 86400
    total = spec.initial_items + spec.items_per_day * spec.days
    published = np.concatenate([
        start - rng.uniform(0, 7 * 86400, spec.initial_items),
        start + np.sort(rng.uniform(0, spec.days * 86400, total - spec.initial_items))])
    sections = rng.integers(0, len(SECTIONS), total)
    quality = 1.0 / rng.permutation(np.arange(1, total + 1)) ** spec.zipf_exponent
    items = []
    for n in range(total):
        section = SECTIONS[sections[n]]
        subject = _SUBJECTS[section][n % 5]
        title = f"{subject} {_PREDICATES[(n // 5) % len(_PREDICATES)]}"
        item_id = f"{section}-{n:04d}"
        items.append(Item(item_id=item_id, url=f"/articles/{item_id}", title=title,
                          image_url=f"/static/thumbs/{section}.svg", section=section,
                          published=float(published[n])))
    return items, sections, quality


def simulate(log: EventLog, spec: SimulationSpec = SimulationSpec(), end: float | None = None,
             catalog: Catalog | None = None) -> dict:
    """Write ``spec.days`` days of events ending at ``end``; upsert the articles into ``catalog``."""
    end = time.time() if end is None else end
    items, sections, quality = make_items(spec, end)
    if catalog is not None:
        for item in items:
            catalog.upsert(item)
    rng = np.random.default_rng(spec.seed + 1)
    tastes = rng.dirichlet([spec.taste_concentration] * len(SECTIONS), spec.users)
    activity = rng.lognormal(-0.3, 0.8, spec.users)
    published = np.array([i.published for i in items])
    ids = [i.item_id for i in items]
    counts = {"decision": 0, "impression": 0, "click": 0}
    start = end - spec.days * 86400
    for day in range(spec.days):
        day_start = start + day * 86400
        batch = []
        for user in range(spec.users):
            for _ in range(rng.poisson(activity[user])):
                t = day_start + rng.uniform(0, 86400)
                batch += _visit(rng, f"reader-{user}", tastes[user], t, ids, sections, quality,
                                published, spec)
        batch += _bot_traffic(rng, spec, day_start, ids, published)
        batch.sort(key=lambda e: e["ts"])
        if batch:
            log.append(*batch)
        for event in batch:
            counts[event["type"]] += 1
    log.sync()
    return {"items": len(items), "users": spec.users, **counts}


def _visit(rng, user, taste, t, ids, sections, quality, published, spec) -> list[dict]:
    live = np.flatnonzero(published <= t)
    age_days = (t - published[live]) / 86400
    appeal = quality[live] * np.exp(-age_days / 3.0)
    section = rng.choice(len(SECTIONS), p=taste)
    in_section = live[sections[live] == section]
    weights = appeal[sections[live] == section]
    if len(in_section) == 0:
        return []
    page = rng.choice(in_section, p=weights / weights.sum())
    recent = live[age_days < 3.0]
    shown = rng.choice(recent, size=min(spec.widget_size, len(recent)), replace=False)
    events = [_event("decision", t, user, ids[page]),
              _event("impression", t + 5, user, ids[page], items=[ids[j] for j in shown])]
    click_p = 0.01 + 0.5 * taste[sections[shown]] * (0.5 + 0.5 * np.sqrt(quality[shown] / quality.max()))
    clicked = [j for j, p in zip(shown, click_p) if rng.random() < p]
    if clicked:
        target = clicked[0]
        events += [_event("click", t + 30, user, ids[page], item=ids[target]),
                   _event("decision", t + 31, user, ids[target])]
    return events


def _bot_traffic(rng, spec, day_start, ids, published) -> list[dict]:
    events = []
    for bot in range(spec.bots):
        for _ in range(40):
            t = day_start + rng.uniform(0, 86400)
            live = np.flatnonzero(published <= t)
            target = ids[rng.choice(live)]
            events.append(_event("click", t, f"crawler-{bot}", target, item=target, bot=True))
    return events


def _event(kind: str, ts: float, user: str, page: str, bot: bool = False, **extra) -> dict:
    event = {"ts": round(ts, 3), "type": kind, "user": user, "page": page, **extra}
    if kind != "decision":
        event |= {"bot": bot, "counted": not bot}
    return event
