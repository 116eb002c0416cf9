"""Server-side rendering of slot answers, for sites whose templates are rendered on the server.

The markup is the loader's own (same classes, same sandboxed frame, same reserved box), so one
stylesheet serves both and a page lays out the same whichever rendered it. Include
/static/adserve.js as well and it fires each slot's impression URLs once the slot has been in view
(``data-adserve-impressions``); without it, nothing is counted.

    answer = requests.post(f"{ADSERVE}/v1/slots", json=body).json()["slots"]
    html = render_slot("s1", answer["s1"], title="You Might Like", placement=placements["you-might-like"])
"""

from __future__ import annotations

from html import escape

from .model import Placement

SANDBOX = "allow-scripts allow-popups allow-popups-to-escape-sandbox"


def render_slot(slot_id: str, fill: dict, title: str | None = None,
                placement: Placement | None = None) -> str:
    """HTML for one slot of a ``POST /v1/slots`` answer.

    With its ``placement`` (give it the sizes the slot asked for), a display slot keeps the box of
    the largest of them, as the loader does, and an unfilled slot follows ``placement.collapse``:
    ``never`` keeps the box (blank), the others, and any slot without a placement, render hidden.
    """
    if fill.get("type") == "display" and fill.get("fill"):
        return _display(slot_id, fill, placement)
    if fill.get("type") == "recs" and fill.get("items"):
        return _recs(slot_id, fill, title)
    if placement is not None and placement.collapse == "never":
        return _blank(slot_id, placement, title)
    return f'<div id="{escape(slot_id)}" class="adserve-empty" data-adserve-state="empty" hidden></div>'


def reserved_box(sizes: list[str]) -> tuple[int, int] | None:
    """Width and height that hold a creative of any of ``sizes`` ("WxH"); None for no size."""
    boxes = [tuple(map(int, size.split("x"))) for size in sizes if size != "native"]
    return (max(w for w, _ in boxes), max(h for _, h in boxes)) if boxes else None


def _box_style(sizes: list[str], extra: str = "") -> str:
    box = reserved_box(sizes)
    return f' style="min-width:{box[0]}px;min-height:{box[1]}px{extra}"' if box else ""


def _impressions(urls) -> str:
    return escape(" ".join(u for u in urls if u))


def _display(slot_id: str, fill: dict, placement: Placement | None) -> str:
    width, height = int(fill["width"]), int(fill["height"])
    if "html" in fill:
        inner = fill["html"]
    else:
        inner = (f'<img src="{escape(fill["image_url"])}" width="{width}" height="{height}" '
                 'alt="Advertisement" style="display:block;border:0">')
    document = ('<!doctype html><html><head><base target="_blank"><style>html,body{margin:0;'
                'overflow:hidden}a{display:block;color:inherit;text-decoration:none}</style></head>'
                f'<body><a href="{escape(fill["click_url"])}" rel="noopener">{inner}</a></body></html>')
    sizes = [f"{width}x{height}", *(placement.sizes if placement else [])]
    return (f'<div id="{escape(slot_id)}" class="adserve-display" data-adserve-state="filled"'
            f'{_box_style(sizes)} data-adserve-campaign="{int(fill["campaign_id"])}" '
            f'data-adserve-impressions="{_impressions([fill["impression_url"]])}">'
            f'<iframe sandbox="{SANDBOX}" srcdoc="{escape(document)}" title="Advertisement" '
            f'scrolling="no" width="{width}" height="{height}" '
            'style="border:0;display:block"></iframe></div>')


def _tile(item: dict | None) -> str:
    """One widget tile, built like the loader's; without an item, a skeleton of the same build."""
    if item is None:
        return ('<li class="adserve-rec adserve-rec--skeleton" aria-hidden="true"><a>'
                '<span class="adserve-rec-img"></span><span class="adserve-rec-title"></span></a></li>')
    sponsored = item.get("sponsored")
    image = (f'<img class="adserve-rec-img" src="{escape(item["image_url"])}" alt="" loading="lazy">'
             if item.get("image_url") else '<span class="adserve-rec-img"></span>')
    label = ""
    if sponsored:
        who = f' · {escape(item["advertiser"])}' if item.get("advertiser") else ""
        label = f'<span class="adserve-sponsored">Sponsored{who}</span>'
    modifier, rel = (" adserve-rec--sponsored", ' rel="sponsored noopener"') if sponsored else ("", "")
    return (f'<li class="adserve-rec{modifier}"><a href="{escape(item["click_url"])}"{rel}>'
            f'{image}<span class="adserve-rec-title">{escape(item["title"])}</span>{label}</a></li>')


def _widget(slot_id: str, title: str | None, tiles: list[str], state: str, attributes: str) -> str:
    heading = f'<h2 class="adserve-recs-heading">{escape(title)}</h2>' if title else ""
    label = f' aria-label="{escape(title)}"' if title else ""
    empty = " adserve-empty" if state == "empty" else ""
    return (f'<div id="{escape(slot_id)}" class="adserve-recs{empty}" role="region"{label} '
            f'data-adserve-state="{state}"{attributes}>{heading}'
            f'<ul class="adserve-recs-list">{"".join(tiles)}</ul></div>')


def _recs(slot_id: str, fill: dict, title: str | None) -> str:
    urls = [fill.get("impression_url")] + [i.get("impression_url") for i in fill["items"]]
    return _widget(slot_id, title, [_tile(item) for item in fill["items"]], "filled",
                   f' data-adserve-strategy="{escape(fill.get("strategy", ""))}" '
                   f'data-adserve-impressions="{_impressions(urls)}"')


def _blank(slot_id: str, placement: Placement, title: str | None) -> str:
    """The reserved box of an unfilled ``never`` slot, blank: the page keeps its layout."""
    if placement.type == "recs":
        return _widget(slot_id, title, [_tile(None)] * placement.count, "empty",
                       ' style="visibility:hidden"')
    return (f'<div id="{escape(slot_id)}" class="adserve-display adserve-empty" data-adserve-state="empty"'
            f'{_box_style(placement.sizes, ";visibility:hidden")}></div>')
