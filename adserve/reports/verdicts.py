"""A/B verdicts on variant rows: each variant against the rest of its creative (``abtest``).

Every row gets ``p_value`` (two-proportion z-test against the rest pooled), ``prob_best`` and,
while the difference is too small to tell, ``needed_impressions`` per variant. Which of them the
``verdict`` is read from depends on how the variants were split:

- ``fixed``: the split was set in advance, so the p-value is a valid test (at 5%).
- ``thompson``: the split followed the data, which breaks the fixed-sample test (it would see
  differences the allocation itself made up, and looking repeatedly inflates false positives);
  the verdict comes from the posterior, which stays valid: ``best`` at ``prob_best`` >= 0.95.

``weight`` is the share of new readers each variant gets: its configured weight under a fixed
split, or the Thompson share (probability of being best, floored at ``min_share``) that the
rows' counts give, which is what serving computes from the same counts.
"""

from __future__ import annotations

from collections import defaultdict

from ..abtest import SIGNIFICANT, Arm, allocation, verdicts
from ..model import Campaign

DECIDED = 0.95  # prob_best a variant needs to be called best under adaptive allocation


def add_verdicts(rows: list[dict], campaigns: dict[int, Campaign]) -> None:
    """Add the A/B fields to variant rows (``report(by="variant")``), creative by creative."""
    creatives: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        creatives[(row["campaign_id"], row["creative_id"])].append(row)
    for (campaign_id, creative_id), group in creatives.items():
        campaign = campaigns.get(campaign_id)
        creative = next((c for c in campaign.creatives if c.id == creative_id), None) if campaign else None
        floor = campaign.thompson_floor(creative) if creative else None
        arms = [Arm(row["impressions"], row["clicks"]) for row in group]
        shares = allocation(arms, floor) if floor is not None else _configured(group, creative)
        shown, clicked = sum(a.impressions for a in arms), sum(a.clicks for a in arms)
        for row, arm, verdict, share in zip(group, arms, verdicts(arms), shares):
            rest = Arm(shown - arm.impressions, clicked - arm.clicks)
            row.update(allocation="fixed" if floor is None else "thompson", weight=share,
                       p_value=verdict.p_value, prob_best=verdict.prob_best,
                       needed_impressions=verdict.needed_impressions)
            row["verdict"] = _verdict(row, floor is not None, len(group), arm.ctr > rest.ctr)


def _configured(rows: list[dict], creative) -> list[float | None]:
    """The configured split of the rows' variants (None: a variant no longer in the config)."""
    weights = {v.id: v.weight for v in creative.variants} if creative else {}
    total = sum(weights.values())
    return [weights[row["variant"]] / total if row["variant"] in weights and total else None for row in rows]


def _verdict(row: dict, adaptive: bool, variants: int, above_rest: bool) -> str:
    if variants < 2:
        return "only variant"
    if adaptive:
        return "best" if row["prob_best"] >= DECIDED else "undecided"
    if row["p_value"] is None or row["p_value"] >= SIGNIFICANT:
        return "undecided"
    return "better" if above_rest else "worse"
