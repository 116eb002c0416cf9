"""Server-side rendering of slot answers, for sites whose templates are rendered on the server.

The markup is the loader's own (same classes, same sandboxed frame), so one stylesheet serves
both. Include /static/adserve.js as well and it fires each slot's impression URLs once the slot
has been in view (``data-adserve-impressions``); without it, nothing is counted.

    answer = requests.post(f"{ADSERVE}/v1/slots", json=body).json()["slots"]
    html = render_slot("s1", answer["s1"], title="You Might Like")
"""

from __future__ import annotations

from html import escape

SANDBOX = "allow-scripts allow-popups allow-popups-to-escape-sandbox"


def render_slot(slot_id: str, fill: dict, title: str | None = None) -> str:
    """HTML for one slot of a ``POST /v1/slots`` answer; an unfilled slot renders hidden."""
    if fill.get("type") == "display" and fill.get("fill"):
        return _display(slot_id, fill)
    if fill.get("type") == "recs" and fill.get("items"):
        return _recs(slot_id, fill, title)
    return f'<div id="{escape(slot_id)}" class="adserve-empty" data-adserve-state="empty" hidden></div>'


def _impressions(urls) -> str:
    return escape(" ".join(u for u in urls if u))


def _display(slot_id: str, fill: dict) -> str:
    if "html" in fill:
        inner = fill["html"]
    else:
        inner = (f'<img src="{escape(fill["image_url"])}" width="{int(fill["width"])}" '
                 f'height="{int(fill["height"])}" alt="Advertisement" style="display:block;border:0">')
    document = ('<!doctype html><html><head><base target="_blank"><style>html,body{margin:0;'
                'overflow:hidden}a{display:block;color:inherit;text-decoration:none}</style></head>'
                f'<body><a href="{escape(fill["click_url"])}" rel="noopener">{inner}</a></body></html>')
    return (f'<div id="{escape(slot_id)}" class="adserve-display" data-adserve-state="filled" '
            f'data-adserve-campaign="{int(fill["campaign_id"])}" '
            f'data-adserve-impressions="{_impressions([fill["impression_url"]])}">'
            f'<iframe sandbox="{SANDBOX}" srcdoc="{escape(document)}" title="Advertisement" '
            f'scrolling="no" width="{int(fill["width"])}" height="{int(fill["height"])}" '
            'style="border:0;display:block"></iframe></div>')


def _recs(slot_id: str, fill: dict, title: str | None) -> str:
    items = []
    for item in fill["items"]:
        sponsored = item.get("sponsored")
        image = f'<img src="{escape(item["image_url"])}" alt="" loading="lazy">' if item.get("image_url") else ""
        label = ""
        if sponsored:
            who = f' · {escape(item["advertiser"])}' if item.get("advertiser") else ""
            label = f'<span class="adserve-sponsored">Sponsored{who}</span>'
        modifier, rel = (" adserve-rec--sponsored", ' rel="sponsored noopener"') if sponsored else ("", "")
        items.append(
            f'<li class="adserve-rec{modifier}"><a href="{escape(item["click_url"])}"{rel}>'
            f'{image}<span class="adserve-rec-title">{escape(item["title"])}</span>{label}</a></li>')
    heading = f'<h2 class="adserve-recs-heading">{escape(title)}</h2>' if title else ""
    label = f' aria-label="{escape(title)}"' if title else ""
    urls = [fill.get("impression_url")] + [i.get("impression_url") for i in fill["items"]]
    return (f'<div id="{escape(slot_id)}" class="adserve-recs" role="region"{label} '
            f'data-adserve-state="filled" data-adserve-strategy="{escape(fill.get("strategy", ""))}" '
            f'data-adserve-impressions="{_impressions(urls)}">{heading}'
            f'<ul class="adserve-recs-list">{"".join(items)}</ul></div>')
