"""What Thompson allocation would have gained on a logged run: a rejection-sampling replay.

The method (Li et al., "Unbiased offline evaluation of contextual-bandit-based news article
recommendation", 2011), for a creative whose variants were logged under a fixed split ``p``: walk
its counted impressions in time order; Thompson allocation (the serving rule: probability of
being best, floored at ``min_share``, from what it has accepted so far) proposes shares ``s``;
the logged impression is kept with probability ``c x s(v) / p(v)`` (``c = min p``, so it never
exceeds 1), and then teaches the policy its click. Kept impressions are distributed as if the
policy had chosen them, so their CTR estimates the policy's CTR; times all logged impressions it
gives the clicks Thompson would have got, and the gain over the logged clicks.

Limits, said in every answer's docs: it needs the logging split, so only creatives logged under a
fixed split are replayed (the config's current variant weights are taken to be the ones logged);
the policy learns only from the kept share of the log (about ``c``), so it learns slower than it
would have live and the gain is on the conservative side; impressions are treated as
independent, though a reader keeps one variant; the interval is the kept CTR's binomial one
(it leaves out the policy's own randomness: run with other seeds to see that).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..abtest import Arm, allocation
from ..events import log_files, read_events
from ..model import Config
from .aggregate import Z95

REFRESH_SECONDS = 5.0  # as serving: shares recomputed at most this often (log time) ...
REFRESH_GROWTH = 0.01  # ... and only once the kept counts grew by 1%: a month replays in seconds


def replay_thompson(source: str | Path, config: Config, campaign: int | None = None,
                    since: dt.date | None = None, until: dt.date | None = None, seed: int = 0) -> list[dict]:
    """One row per replayed creative: logged and Thompson clicks, the gain, the weights."""
    splits = _fixed_splits(config, campaign)
    shown, clicked = _counted_hits(Path(source), {creative for _, creative in splits}, since, until)
    rng = np.random.default_rng(seed)
    rows = []
    for (campaign_id, creative_id), (split, floor) in splits.items():
        impressions = sorted(shown.get(creative_id, ()))
        if impressions:
            rows.append(_replay(campaign_id, creative_id, split, floor, impressions, clicked, rng))
    return rows


def _fixed_splits(config: Config, campaign: int | None) -> dict[tuple, tuple[dict[str, float], float]]:
    """(campaign id, creative id) -> (logged share per variant, min_share) for fixed-split creatives."""
    out = {}
    for c in config.campaigns:
        if campaign is not None and c.id != campaign:
            continue
        for creative in c.creatives:
            weights = {v.id: v.weight for v in creative.variants if v.weight > 0}
            if len(weights) > 1 and c.thompson_floor(creative) is None:
                total = sum(weights.values())
                floor = creative.min_share if creative.min_share is not None else c.min_share
                out[(c.id, creative.id)] = ({v: w / total for v, w in weights.items()}, floor)
    return out


def _counted_hits(source: Path, creatives: set[str], since, until):
    """Counted, billable impressions per creative as (ts, variant, token), and clicked tokens."""
    shown: dict[str, list[tuple]] = defaultdict(list)
    clicked: set[str] = set()
    seen: set[tuple] = set()
    for event in read_events(log_files(source, since, until), types=frozenset({"impression", "click"})):
        if event.get("creative") not in creatives or not event.get("counted") or event.get("billable") is False:
            continue
        key = (event["type"], event.get("token"))
        if key in seen:  # a spool shipped twice
            continue
        seen.add(key)
        if event["type"] == "impression":
            shown[event["creative"]].append((float(event["ts"]), event.get("variant"), event.get("token")))
        else:
            clicked.add(event.get("token"))
    return shown, clicked


def _replay(campaign_id, creative_id, split: dict[str, float], floor: float, impressions: list[tuple],
            clicked: set[str], rng: np.random.Generator) -> dict:
    variants = list(split)
    arms = {v: [0, 0] for v in variants}
    scale = min(split.values())
    shares = dict(zip(variants, allocation([Arm(0, 0)] * len(variants), floor)))
    refreshed_at, refreshed_size = -math.inf, 0
    kept = kept_clicks = logged_clicks = 0
    for (ts, variant, token), draw in zip(impressions, rng.random(len(impressions))):
        click = token in clicked
        logged_clicks += click
        if variant not in split:
            continue  # a variant no longer in the config
        if ts - refreshed_at >= REFRESH_SECONDS and kept >= refreshed_size * (1 + REFRESH_GROWTH):
            shares = dict(zip(variants, allocation([Arm(*arms[v]) for v in variants], floor)))
            refreshed_at, refreshed_size = ts, kept
        if draw < scale * shares[variant] / split[variant]:
            kept += 1
            kept_clicks += click
            arms[variant][0] += 1
            arms[variant][1] += click
    ctr = kept_clicks / kept if kept else None
    spread = Z95 * math.sqrt(ctr * (1 - ctr) / kept) if kept else None
    total = len(impressions)
    return {"campaign_id": campaign_id, "creative_id": creative_id, "impressions": total,
            "clicks": logged_clicks, "ctr": logged_clicks / total, "kept": kept,
            "thompson_ctr": ctr, "thompson_clicks": None if ctr is None else ctr * total,
            "gain": None if ctr is None else ctr * total - logged_clicks,
            "gain_low": None if ctr is None else (ctr - spread) * total - logged_clicks,
            "gain_high": None if ctr is None else (ctr + spread) * total - logged_clicks,
            "weights_logged": split,
            "weights_thompson": dict(zip(variants, allocation([Arm(*arms[v]) for v in variants], floor)))}
