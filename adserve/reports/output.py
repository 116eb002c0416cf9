"""Report rows as a terminal table, CSV or JSON (what ``adserve report --format`` prints).

The table shows what a marketer reads first (a CTR with its 95% interval, spend, budget and
pacing); CSV and JSON carry every field of every row, for spreadsheets and scripts.
"""

from __future__ import annotations

import csv
import io
import json

LEADING = {"campaign": ("campaign_id", "campaign"), "creative": ("campaign_id", "creative_id"),
           "variant": ("campaign_id", "creative_id", "variant"), "placement": ("placement",),
           "day": ("day",), "strategy": ("strategy", "sponsored"), "replay": ("campaign_id", "creative_id")}
COUNTS = {"campaign": ("answers", "impressions", "clicks", "ctr", "spend", "budget", "pacing", "readers",
                       "frequency"),
          "creative": ("answers", "impressions", "clicks", "ctr", "spend"),
          "variant": ("answers", "impressions", "clicks", "ctr", "spend", "weight", "prob_best", "p_value",
                      "verdict"),
          "placement": ("requests", "fill_rate", "impressions", "clicks", "ctr"),
          "day": ("requests", "fill_rate", "impressions", "clicks", "ctr", "spend"),
          "strategy": ("impressions", "clicks", "ctr"),
          "replay": ("impressions", "clicks", "weights_logged", "kept", "thompson_ctr", "gain",
                     "weights_thompson")}


def render(rows: list[dict], by: str, form: str) -> str:
    if form == "json":
        return json.dumps(rows, indent=2)
    if form == "csv":
        return _csv(rows)
    return _table(rows, by)


def _csv(rows: list[dict]) -> str:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _frequency(value) if key == "frequency" else value for key, value in row.items()})
    return out.getvalue().rstrip("\n")


def _table(rows: list[dict], by: str) -> str:
    if not rows:
        return "no events in the chosen days"
    header = [*LEADING[by], *COUNTS[by]]
    cells = [[_cell(column, row) for column in header] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(header)]
    lines = [header, *cells]
    return "\n".join("  ".join(text.ljust(width) if i < len(LEADING[by]) else text.rjust(width)
                               for i, (text, width) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def _cell(column: str, row: dict) -> str:
    value = row.get(column)
    if column.endswith("_id"):
        return str(value)
    if column == "ctr":
        return "-" if value is None else f"{value:.2%} [{row['ctr_low']:.2%}-{row['ctr_high']:.2%}]"
    if column in ("fill_rate", "pacing", "weight", "prob_best"):
        return "-" if value is None else f"{value:.0%}"
    if column == "spend":
        return f"{value:,.2f}"
    if column == "budget":
        if row.get("budget_metric") is None:
            return "-"
        total = row["budget_total"]
        used = _number(row["budget_used"])
        return f"{used} of {_number(total)}" if total is not None else used
    if column == "frequency":
        return _frequency(value)
    if column.startswith("weights_"):
        return " ".join(f"{variant}:{share:.0%}" for variant, share in value.items())
    if column == "thompson_ctr":
        return "-" if value is None else f"{value:.2%}"
    if column == "gain":
        return "-" if value is None else f"{value:+,.0f} [{row['gain_low']:+,.0f} to {row['gain_high']:+,.0f}]"
    if column == "p_value":
        return "-" if value is None else f"{value:.3f}"
    if column == "verdict" and value == "undecided" and row.get("needed_impressions"):
        return f"undecided (need {row['needed_impressions']:,} each)"
    if column == "sponsored":
        return "sponsored" if value else "organic"
    return "-" if value is None else _number(value) if isinstance(value, (int, float)) else str(value)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _frequency(buckets: dict | None) -> str:
    return " ".join(f"{times}:{readers}" for times, readers in buckets.items() if readers) if buckets else ""
