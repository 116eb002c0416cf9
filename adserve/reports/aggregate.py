"""Delivery reports from the daily rollups: rows per grouping, and per-day series for charts.

The public API (the command and the ``/report`` page both build on it)::

    days = rollups(events_dir)                       # adserve.reports.rollup: every day's rollup
    report(days, by="campaign", config=None, since=None, until=None, campaign=None, now=None)
        -> list[dict]   one row per group; by: campaign, creative, variant, placement, day, strategy
                        (variant rows carry A/B verdicts: see ``verdicts``)
    delivery_series(days, config, campaign=None, since=None, until=None, now=None)
        -> list[dict]   per campaign and UTC day: impressions, clicks, spend; delivered that day
                        and delivered_total through it (in the budget's metric: impressions,
                        clicks or currency), planned that day and planned_total (the flight's
                        even-pacing line at the day's end, or at ``now`` for today)
    fill_series(days, since=None, until=None)
        -> list[dict]   per placement and UTC day: requests, filled, fill_rate
    wilson(clicks, impressions) -> (low, high)   the 95% interval of a CTR (None, None at 0)

Counts are the impressions and clicks that counted toward caps and budgets (``counted: true``
and not ``billable: false``). ``config`` (a ``model.Config``) names campaigns and prices hits
whose older log lines carry no ``charge``; budgets and pacing need it. ``since``/``until`` are
UTC days (inclusive); budget used and pacing always look at the whole flight in the log.
Money is summed in integer micro-units and shown in currency (``spend``) beside them
(``spend_micros``). ``now`` (aware datetime) is where the pacing line stands (default: now).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal

import numpy as np

from ..ledger import Ledger, spend_micros
from ..model import MICROS, Campaign, Config
from . import GROUPINGS
from .columns import text
from .rollup import DayRollup, group
from .verdicts import add_verdicts

Z95 = 1.959963984540054
FREQUENCIES = ("1", "2", "3", "4", "5", "6-10", "11+")


def wilson(clicks: int, impressions: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of clicks/impressions: sound at small counts and at 0 or 100%."""
    if impressions <= 0:
        return None, None
    p = clicks / impressions
    spread = z * math.sqrt(p * (1 - p) / impressions + z * z / (4 * impressions * impressions))
    centre = p + z * z / (2 * impressions)
    scale = 1 + z * z / impressions
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def report(days: list[DayRollup], by: str = "campaign", config: Config | None = None,
           since: dt.date | None = None, until: dt.date | None = None, campaign: int | None = None,
           now: dt.datetime | None = None) -> list[dict]:
    """One row per group of ``by`` over [since, until] (see the module docstring)."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")
    chosen = [_only(day, campaign) for day in _within(days, since, until)]
    campaigns = {c.id: c for c in config.campaigns} if config else {}
    if by == "placement":
        rows = _placement_rows(chosen)
    elif by == "day":
        rows = _day_rows(chosen, campaigns)
    elif by == "strategy":
        rows = _strategy_rows(chosen)
    else:
        rows = _ad_rows(chosen, by, campaigns)
        if by == "variant":
            add_verdicts(rows, campaigns)
        if by == "campaign":
            _add_reach(rows, chosen)
            daily = {day.day: {r["campaign_id"]: r
                               for r in _ad_rows([_only(day, campaign)], "campaign", campaigns)}
                     for day in days if day.day is not None}  # the whole log: budgets span the flight
            for row in rows:
                if row["campaign_id"] in campaigns:
                    row.update(_budget(campaigns[row["campaign_id"]], daily, now, config))
    return [row for row in rows if campaign is None or row.get("campaign_id") == campaign]


def delivery_series(days: list[DayRollup], config: Config, campaign: int | None = None,
                    since: dt.date | None = None, until: dt.date | None = None,
                    now: dt.datetime | None = None) -> list[dict]:
    """Per campaign and day: what it delivered and what the even-pacing line planned."""
    campaigns = {c.id: c for c in config.campaigns}
    ledger = Ledger(config.site.timezone)
    totals: dict[int, int] = defaultdict(int)  # delivered since the log's first day, counter units
    rows = []
    for day in (d for d in days if d.day is not None and (until is None or d.day <= until)):
        start = dt.datetime.combine(day.day, dt.time(), dt.timezone.utc)
        for row in _ad_rows([_only(day, campaign)], "campaign", campaigns):
            found = campaigns.get(row["campaign_id"])
            if (campaign is not None and row["campaign_id"] != campaign) or found is None:
                continue
            delivered = _delivered(found, row)
            totals[found.id] += delivered
            if since is None or day.day >= since:
                at = [min(moment, now or _now()) for moment in (start, start + dt.timedelta(days=1))]
                plan = [_planned(found, ledger, moment) for moment in at]
                rows.append({"day": day.day.isoformat(), "campaign_id": found.id,
                             "impressions": row["impressions"], "clicks": row["clicks"],
                             "spend": row["spend"], "delivered": _shown(found, delivered),
                             "delivered_total": _shown(found, totals[found.id]),
                             "planned": None if plan[1] is None else plan[1] - plan[0],
                             "planned_total": plan[1]})
    return rows


def fill_series(days: list[DayRollup], since: dt.date | None = None,
                until: dt.date | None = None) -> list[dict]:
    """Per placement and day: slot requests, how many were filled, and the fill rate."""
    return [{"day": day.day.isoformat() if day.day else None, **row}
            for day in _within(days, since, until)
            for row in _placement_rows([day], with_hits=False)]


# -- rows -------------------------------------------------------------------------------------

def _within(days: list[DayRollup], since: dt.date | None, until: dt.date | None) -> list[DayRollup]:
    return [d for d in days if d.day is None or ((since is None or d.day >= since)
                                                 and (until is None or d.day <= until))]


def _only(day: DayRollup, campaign: int | None) -> DayRollup:
    """The day's rows of one campaign (its native answers in widgets included)."""
    if campaign is None:
        return day
    cid = str(campaign).encode()
    tables = {}
    for name in ("hits", "slots", "reach"):
        table = getattr(day, name)
        keep = table["campaign"] == cid
        if name == "slots":
            listed = np.char.add(np.char.add(b",", np.char.strip(table["sponsored"], b"[]")), b",")
            keep |= np.char.find(listed, b"," + cid + b",") >= 0
        tables[name] = {column: values[keep] for column, values in table.items()}
    return DayRollup(day.day, **tables)


def _stack(days: list[DayRollup], table: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The days' rows of one table, summed per ``keys`` (a table's sums all come along)."""
    tables = [getattr(d, table) for d in days]
    if not tables:
        return {}
    columns = {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}
    sums = {name: values for name, values in columns.items() if values.dtype.kind in "iu"}
    return group({key: columns[key] for key in keys}, sums)


def _ctr(row: dict) -> dict:
    low, high = wilson(row["clicks"], row["impressions"])
    row.update(ctr=row["clicks"] / row["impressions"] if row["impressions"] else None, ctr_low=low, ctr_high=high)
    return row


def _hits_by(days: list[DayRollup], keys: tuple[str, ...], campaigns: dict[int, Campaign]) -> dict[tuple, dict]:
    """Impressions, clicks, spend and over-limit hits per ``keys`` (decoded ids); hits without a
    logged charge are priced by their campaign's price model."""
    hits = _stack(days, "hits", tuple(dict.fromkeys(("kind", "campaign", *keys))))
    out: dict[tuple, dict] = defaultdict(lambda: {"impressions": 0, "clicks": 0, "spend_micros": 0,
                                                  "over_limit": 0})
    if not hits:
        return out
    decoded = {key: _ids(text(hits[key])) if key == "campaign" else text(hits[key])
               for key in ("kind", "campaign", *keys)}
    for i, (kind, cid) in enumerate(zip(decoded["kind"], decoded["campaign"])):
        row = out[tuple(decoded[key][i] for key in keys)]
        row["impressions" if kind == "impression" else "clicks"] += int(hits["events"][i])
        row["over_limit"] += int(hits["over_limit"][i])
        price = spend_micros(campaigns[cid], kind) if cid in campaigns else 0
        row["spend_micros"] += int(hits["charged"][i]) + int(hits["uncharged"][i]) * price
    return out


def _ids(values: list[str | None]) -> list:
    return [int(v) if v is not None and v.lstrip("-").isdigit() else v for v in values]


def _ad_rows(days: list[DayRollup], by: str, campaigns: dict[int, Campaign]) -> list[dict]:
    keys = {"campaign": ("campaign",), "creative": ("campaign", "creative"),
            "variant": ("campaign", "creative", "variant")}[by]
    hits = _hits_by(days, keys, campaigns)
    answers = _answers(days, keys)
    rows = []
    for label in sorted(set(hits) | set(answers), key=lambda k: tuple(str(x) for x in k)):
        if label[0] is None:
            continue  # a widget's own hits: see --by strategy
        found = campaigns.get(label[0])
        row = {"campaign_id": label[0], "campaign": found.name if found else None,
               "creative_id": label[1] if len(label) > 1 else None,
               "variant": label[2] if len(label) > 2 else None, "answers": answers.get(label, 0),
               **hits[label]}
        row["spend"] = _money(row["spend_micros"])
        rows.append(_ctr(row))
    return rows


def _answers(days: list[DayRollup], keys: tuple[str, ...]) -> dict[tuple, int]:
    """Slot answers that served each group: display fills, and (per campaign) native ones."""
    slots = _stack(days, "slots", (*keys, "sponsored"))
    out: dict[tuple, int] = defaultdict(int)
    if not slots:
        return out
    labels = [_ids(text(slots[key])) if key == "campaign" else text(slots[key]) for key in keys]
    for i, (sponsored, *label) in enumerate(zip(slots["sponsored"].tolist(), *labels)):
        if label[0] is not None:
            out[tuple(label)] += int(slots["requests"][i])
        elif keys == ("campaign",) and sponsored.startswith(b"[") and sponsored != b"[]":
            for cid in _ids(sponsored.strip(b"[]").decode().split(",")):
                out[(cid,)] += int(slots["requests"][i])
    return out


def _placement_rows(days: list[DayRollup], with_hits: bool = True) -> list[dict]:
    slots = _stack(days, "slots", ("placement",))
    hits = _hits_by(days, ("placement",), {}) if with_hits else {}
    rows = []
    names = text(slots["placement"]) if slots else []
    for i, name in enumerate(names):
        requests, filled = int(slots["requests"][i]), int(slots["filled"][i])
        row = {"placement": name, "requests": requests, "filled": filled,
               "fill_rate": filled / requests if requests else None}
        if with_hits:
            got = hits.get((name,), {"impressions": 0, "clicks": 0})
            row = _ctr({**row, "impressions": got["impressions"], "clicks": got["clicks"]})
        rows.append(row)
    return rows


def _day_rows(days: list[DayRollup], campaigns: dict[int, Campaign]) -> list[dict]:
    rows = []
    for day in days:
        slots = _stack([day], "slots", ())
        totals = _hits_by([day], (), campaigns).get((), {"impressions": 0, "clicks": 0, "spend_micros": 0,
                                                         "over_limit": 0})
        requests = int(slots["requests"].sum()) if slots else 0
        filled = int(slots["filled"].sum()) if slots else 0
        rows.append(_ctr({"day": day.day.isoformat() if day.day else None, "requests": requests,
                          "filled": filled, "fill_rate": filled / requests if requests else None,
                          **totals, "spend": _money(totals["spend_micros"])}))
    return rows


def _strategy_rows(days: list[DayRollup]) -> list[dict]:
    hits = _hits_by(days, ("strategy", "sponsored"), {})
    return [_ctr({"strategy": strategy, "sponsored": sponsored == "true",
                  "impressions": got["impressions"], "clicks": got["clicks"]})
            for (strategy, sponsored), got in sorted(hits.items(), key=lambda kv: str(kv[0]))
            if strategy is not None]


def _add_reach(rows: list[dict], days: list[DayRollup]) -> None:
    """Readers reached and how many saw the campaign 1, 2, ... times (readers without an id
    or consent are not in it)."""
    reach = _stack(days, "reach", ("campaign", "reader"))
    per_campaign: dict = defaultdict(list)
    if reach:
        for cid, seen in zip(_ids(text(reach["campaign"])), reach["impressions"].tolist()):
            per_campaign[cid].append(seen)
    for row in rows:
        seen = np.array(per_campaign.get(row["campaign_id"], []), dtype=np.int64)
        buckets = np.digitize(seen, [2, 3, 4, 5, 6, 11])
        row["readers"] = len(seen)
        row["frequency"] = dict(zip(FREQUENCIES, np.bincount(buckets, minlength=7).tolist()))


# -- budgets and pacing ----------------------------------------------------------------------

def _budget(campaign: Campaign, daily: dict[dt.date, dict], now: dt.datetime | None, config: Config) -> dict:
    """Budget used and left over the flight (``daily``: each day's rows per campaign id), and
    delivery against the even-pacing line so far."""
    budget = campaign.budget
    if budget is None:
        return {"budget_metric": None}
    first, last = (moment.astimezone(dt.timezone.utc).date() for moment in (campaign.flight.start,
                                                                          campaign.flight.end))
    used = sum(_delivered(campaign, rows[campaign.id]) for day, rows in daily.items()
               if first <= day <= last and campaign.id in rows)
    total = _units(budget.metric, budget.total) if budget.total is not None else None
    planned = _planned(campaign, Ledger(config.site.timezone), now or _now())
    used = _shown(campaign, used)
    return {"budget_metric": budget.metric, "budget_total": total, "budget_used": used,
            "budget_left": None if total is None else round(total - used, 6), "planned": planned,
            "pacing": used / planned if planned else None}


def _delivered(campaign: Campaign, row: dict) -> int:
    """What the row delivered in the budget's counter units (micro-units for spend)."""
    metric = campaign.budget.metric if campaign.budget else "impressions"
    return row["spend_micros"] if metric == "spend" else row[metric]


def _shown(campaign: Campaign, units: int) -> float:
    """Counter units as the budget states them: currency for spend, else a count."""
    return _money(units) if campaign.budget and campaign.budget.metric == "spend" else units


def _planned(campaign: Campaign, ledger: Ledger, at: dt.datetime) -> float | None:
    """Where the even-pacing line of the flight stands at ``at``, in the budget's units: the
    server's own plan (the hours the campaign can serve), without its traffic weighting."""
    budget = campaign.budget
    if budget is None:
        return None
    if budget.total is not None:
        return _units(budget.metric, budget.total) * ledger.flight_share(campaign, ledger.moment(at))
    if budget.daily is None:
        return None
    served = (min(at, campaign.flight.end) - campaign.flight.start).total_seconds() / 86400
    return _units(budget.metric, budget.daily) * max(0.0, served)


def _units(metric: str, amount: Decimal) -> float:
    return float(amount) if metric == "spend" else int(amount)


def _money(micros: int) -> float:
    return round(micros / MICROS, 6)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
