"""Choose recs settings on the site's own log, never looking at the window they are tested on.

The log's last ``test_share`` of time is the test window. The same share of what comes before it
is the validation window: every candidate trains on what precedes that window and is scored on
it (``personal``, precision@k); the best is then trained on everything before the test window
and scored there once, next to every other strategy, so its test score is an honest estimate.
Settings that only reorder (the popularity half-life) share one fit.

The choice is kept in a small JSON file beside the model (``recs-tuned.json``) that ``adserve
train`` and ``adserve evaluate`` apply over the config's ``recs`` until the next tune.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..model import Recs
from .evaluate import Score, evaluate, score, split_time, time_split
from .matrix import Interactions
from .train import fit

REFITS = {"regularization": (0.01, 0.05, 0.5), "weighting": ("bm25", "confidence")}
REORDERS = {"popularity_half_life_hours": (6.0, 24.0, 72.0, 720.0)}
GRID = REFITS | REORDERS
TUNED_FILE = "recs-tuned.json"


@dataclass
class Tuning:
    params: dict        # the chosen settings, by Recs field name
    validation: float   # personal precision@k with them on the validation window
    test: list[Score]   # every strategy with them on the test window


def tune(data: Interactions, recs: Recs, k: int = 6, test_share: float = 0.2) -> Tuning | None:
    """The best settings of the grid (None when the log is too short for two windows)."""
    earlier = data.select(data.ts < split_time(data, test_share))
    validation = time_split(earlier, recs, test_share / (1 - test_share)) if len(earlier) else None
    if validation is None:
        return None
    best: tuple[float, Recs] | None = None
    for values in itertools.product(*REFITS.values()):
        fitted = replace(recs, **dict(zip(REFITS, values)))
        model = fit(validation.past, fitted)
        for orders in itertools.product(*REORDERS.values()):
            candidate = replace(fitted, **dict(zip(REORDERS, orders)))
            (personal,) = score(validation, model, candidate, k, names=("personal",))
            if best is None or personal.precision > best[0]:
                best = (personal.precision, candidate)
    precision, chosen = best
    params = {name: getattr(chosen, name) for name in GRID}
    return Tuning(params, precision, evaluate(data, chosen, k, test_share))


def save(tuning: Tuning, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"params": tuning.params, "validation": tuning.validation,
                                      "test": [asdict(s) for s in tuning.test]}, indent=2) + "\n")


def tuned(recs: Recs, path: str | Path) -> Recs:
    """``recs`` with the last tune's choice at ``path`` applied; unchanged without a usable file
    (only values of the grids are taken, so a hand-edited or torn file cannot break training)."""
    try:
        params = json.loads(Path(path).read_text())["params"]
        chosen = {name: params[name] for name, grid in GRID.items() if params.get(name) in grid}
    except (OSError, ValueError, KeyError, TypeError):
        return recs
    return replace(recs, **chosen)
