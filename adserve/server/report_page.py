"""``GET /report`` and ``/report/campaigns/{id}``: the delivery report as one HTML page.

For the site's marketers, behind ``Authorization: Bearer $ADSERVE_REPORT_TOKEN`` (compared in
constant time; 401 without it or with another). Without the variable the routes do not exist
(404): a report shows revenue and reach, so it is off unless the operator turns it on.

The page is read from the event log's daily rollups (``reports``), never from serving state,
in a worker thread, one request at a time (a closed day is read from its rollup, the open day
from its files: concurrent requests queue instead of each rebuilding it on the serving cores). Its
charts are inline SVG (``reports.charts``); it loads nothing and runs no script, and its CSP
says so. Every name from the config is escaped: campaign names are marketer input.
"""

from __future__ import annotations

import asyncio
from html import escape

from aiohttp import web

from ..model import Config
from ..reports.aggregate import delivery_series, fill_series, report
from ..reports.charts import Series, bars, intervals, lines
from ..reports.rollup import rollups
from .auth import bearer_matches

HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                                      "form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#1d2733;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}p.sub{color:#5b6b7b;margin:0 0 16px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid #e3e8ee;text-align:right}th:first-child,td:first-child{text-align:left}
th{font-weight:600;color:#5b6b7b}a{color:#1f5fbf}
svg{display:block;max-width:100%;height:auto;margin:8px 0}svg text{font:12px system-ui,sans-serif;fill:#1d2733}
.tick,.note,.legend{fill:#5b6b7b}.grid{stroke:#e3e8ee}.interval{stroke:#1f5fbf;stroke-width:2}
.line-a,.line-b{stroke-width:2}.line-a{stroke:#1f5fbf}.line-b{stroke:#c2410c;stroke-dasharray:5 4}
.dot-a,.key-a{fill:#1f5fbf}.dot-b,.key-b{fill:#c2410c}.bar{fill:#3d8f5f}
"""


def routes(server, token: str | None) -> list[web.RouteDef]:
    """The report routes, only when a token is set."""
    if not token:
        return []
    reading = asyncio.Lock()  # one log read at a time: a cold month or the open day is CPU-heavy

    async def page(request: web.Request) -> web.Response:
        if not bearer_matches(request, token):
            return web.json_response({"error": "unauthorized", "detail": "a valid 'Authorization: Bearer "
                                      "<token>' is required"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="report"', **HEADERS})
        campaign = int(request.match_info["campaign_id"]) if "campaign_id" in request.match_info else None
        async with reading:
            text = await asyncio.to_thread(render, server.events.folder, server.runtime.config, campaign,
                                           server.clock())
        if text is None:
            raise web.HTTPNotFound(text=f"no campaign {campaign} in the config or the log")
        return web.Response(text=text, content_type="text/html", headers=HEADERS)

    return [web.get("/report", page), web.get(r"/report/campaigns/{campaign_id:\d{1,18}}", page)]


def render(events_dir, config: Config, campaign: int | None, now) -> str | None:
    """The page: every campaign, or one (None when it is neither configured nor logged)."""
    days = rollups(events_dir) if events_dir.is_dir() else []
    campaigns = report(days, "campaign", config, campaign=campaign, now=now)
    known = {c.id: c for c in config.campaigns}
    if campaign is not None and not campaigns and campaign not in known:
        return None
    variants = [row for row in report(days, "variant", config, campaign=campaign, now=now)
                if row["verdict"] != "only variant"]
    span = f"{days[0].day} to {days[-1].day} (UTC)" if days and days[0].day else "no events yet"
    if campaign is None:
        title, body = "Delivery report", [_campaign_table(campaigns), _fill(days)]
    else:
        name = known[campaign].name if campaign in known else f"campaign {campaign}"
        title = f"{name} (#{campaign})"
        body = ['<p><a href="/report">All campaigns</a></p>', _campaign_table(campaigns, links=False),
                _delivery(days, config, campaign, now)]
    body += [_variants_chart(variants), _variant_table(variants)]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><h1>{escape(title)}</h1><p class="sub">{escape(config.site.name)} · {escape(span)}</p>'
            + "".join(body) + "</body></html>")


def _campaign_table(rows: list[dict], links: bool = True) -> str:
    head = "<tr><th>Campaign</th><th>Impressions</th><th>Clicks</th><th>CTR (95%)</th><th>Spend</th>" \
           "<th>Budget used</th><th>Pacing</th></tr>"
    body = []
    for row in rows:
        name = escape(row["campaign"] or f"campaign {row['campaign_id']}")
        if links and isinstance(row["campaign_id"], int):  # a foreign id in the log has no page
            name = f'<a href="/report/campaigns/{row["campaign_id"]}">{name}</a>'
        budget = ("-" if row.get("budget_metric") is None else
                  f'{_num(row["budget_used"])} of {_num(row["budget_total"])} {escape(row["budget_metric"])}'
                  if row.get("budget_total") is not None else f'{_num(row["budget_used"])} {escape(row["budget_metric"])}')
        pacing = "-" if row.get("pacing") is None else f'{row["pacing"]:.0%}'
        body.append(f'<tr><td>{name}</td><td>{row["impressions"]:,}</td><td>{row["clicks"]:,}</td>'
                    f'<td>{_ctr(row)}</td><td>{row["spend"]:,.2f}</td><td>{budget}</td><td>{pacing}</td></tr>')
    return f'<h2>Campaigns</h2><table>{head}{"".join(body)}</table>' if body else "<p>No campaign served yet.</p>"


def _delivery(days, config: Config, campaign: int, now) -> str:
    """Each day's delivery against the even-pacing plan's share of that day (the open day: so far)."""
    series = delivery_series(days, config, campaign, now=now)
    if not series:
        return "<p>No delivery yet.</p>"
    found = next((c for c in config.campaigns if c.id == campaign), None)
    metric = found.budget.metric if found and found.budget else "impressions"
    delivered = [row["delivered"] for row in series]
    planned = [row["planned"] for row in series]
    chart = lines(f"Delivered {metric} per day against the even-pacing plan", [row["day"][5:] for row in series],
                  [Series(f"delivered {metric}", delivered, "a")]
                  + ([Series("even-pacing plan", planned, "b")] if any(p is not None for p in planned) else []))
    return f"<h2>Delivery per day</h2>{chart}"


def _fill(days) -> str:
    totals: dict[str, list[int]] = {}
    for row in fill_series(days):
        got = totals.setdefault(row["placement"] or "(no placement)", [0, 0])
        got[0] += row["requests"]
        got[1] += row["filled"]
    if not totals:
        return ""
    rows = [(name, filled / requests if requests else None, f"{filled:,} of {requests:,}")
            for name, (requests, filled) in sorted(totals.items())]
    return f'<h2>Fill rate per placement</h2>{bars("Fill rate per placement", rows)}'


def _variants_chart(rows: list[dict]) -> str:
    points = [(f'{row["creative_id"]} · {row["variant"]}', row["ctr"], row["ctr_low"], row["ctr_high"],
               f'{row["impressions"]:,} imp.' if row["ctr"] is not None else "no impressions") for row in rows]
    return f'<h2>CTR by variant (95% interval)</h2>{intervals("CTR by variant", points)}' if points else ""


def _variant_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "<tr><th>Creative · variant</th><th>Split</th><th>Weight now</th><th>CTR (95%)</th>" \
           "<th>P(best)</th><th>p-value</th><th>Verdict</th></tr>"
    body = "".join(
        f'<tr><td>{escape(str(row["creative_id"]))} · {escape(str(row["variant"]))}</td>'
        f'<td>{escape(row["allocation"])}</td><td>{"-" if row["weight"] is None else format(row["weight"], ".0%")}</td>'
        f'<td>{_ctr(row)}</td><td>{row["prob_best"]:.0%}</td>'
        f'<td>{"-" if row["p_value"] is None else format(row["p_value"], ".3f")}</td><td>{_verdict(row)}</td></tr>'
        for row in rows)
    note = ("<p class=\"sub\">Under a fixed split the verdict is the p-value's (5%); under Thompson "
            "allocation it is the posterior's (best at P(best) ≥ 95%), since the split followed the data.</p>")
    return f"<h2>A/B variants</h2><table>{head}{body}</table>{note}"


def _verdict(row: dict) -> str:
    if row["verdict"] == "undecided" and row["needed_impressions"]:
        return f'undecided (need {row["needed_impressions"]:,} each)'
    return escape(row["verdict"])


def _ctr(row: dict) -> str:
    if row["ctr"] is None:
        return "-"
    return f'{row["ctr"]:.2%} ({row["ctr_low"]:.2%}–{row["ctr_high"]:.2%})'


def _num(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
