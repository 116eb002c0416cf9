"""Server-side rendering of slot answers, for sites whose templates are rendered on the server.

The markup is the loader's own (same classes, same sandboxed frame, same reserved box), so one
stylesheet serves both and a page lays out the same whichever rendered it. Include
/static/adserve.js as well and it fires each slot's impression URLs once the slot has been in view
(``data-adserve-impressions``); without it, nothing is counted.

    answer = requests.post(f"{ADSERVE}/v1/slots", json=body).json()["slots"]
    html = render_slot("s1", answer["s1"], title="You Might Like", placement=placements["you-might-like"])

Pages whose slots the loader fills reserve their space here too (``reserve_slots``): the one
source of the slots' dimensions (the base tile CSS, the boxes, the skeleton tiles) that the
served loader shares, so the page and the loader reserve the same box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from html import escape, unescape

from .model import Placement

SANDBOX = "allow-scripts allow-popups allow-popups-to-escape-sandbox"
# the server's limit for a widget (the config's and the request's): more skeleton tiles never fill
MAX_ITEMS = next(f for f in fields(Placement) if f.name == "count").metadata["max"]
# What makes every tile one size, skeleton or filled, and centres a creative in its box. No
# specificity (:where), so any rule of the page's own wins. The served loader carries it too.
BASE_CSS = (
    ":where(.adserve-recs-list){list-style:none;margin:0;padding:0;display:grid;"
    "grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:14px}"
    ":where(.adserve-rec>a){display:flow-root;position:relative;padding-bottom:1.5em;"
    "color:inherit;text-decoration:none}"
    ":where(.adserve-rec-img){display:block;width:100%;aspect-ratio:16/10;object-fit:cover;background:#e6e6e6}"
    ":where(.adserve-rec-title){display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:2;"
    "overflow:hidden;line-height:1.3;height:2.6em}"
    ":where(.adserve-rec--skeleton .adserve-rec-title){background:#e6e6e6}"
    ":where(.adserve-sponsored){position:absolute;left:0;bottom:0;font-size:12px;white-space:nowrap}"
    ":where(.adserve-display){display:flex;justify-content:center;align-items:center}")
# an empty slot element of a page, as publishers mark them (double-quoted attributes)
EMPTY_SLOT = re.compile(r'<div\b(?P<attributes>[^>]*\bdata-adserve-slot="(?P<name>[^"]*)"[^>]*)>\s*</div>')
ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')


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


def reserve_slots(page: str, placements: Mapping[str, Placement]) -> str:
    """``page`` with the space of each empty slot element (``<div data-adserve-slot=...></div>``)
    reserved in its own markup, so that the first frame already has it.

    The loader is async: it runs after the browser's first paint, later still when the ad server
    is slow, and reserving space then moves what the reader already sees. So a widget gets its
    heading, skeleton tiles and footer here, and a display slot a class whose rule, in a
    ``<style>`` put before ``</head>``, gives it the box the loader would give it: the largest of
    its sizes as wide as the viewport or narrower (the loader, which sees the slot's container,
    keeps this box if it is larger than its own). Sizes, count and collapse are read like the
    loader reads them: the slot's ``data-adserve-*`` attributes over its placement.
    """
    rules: dict[str, str] = {}

    def reserve(match: re.Match) -> str:
        attributes = {name: unescape(value) for name, value in ATTRIBUTE.findall(match["attributes"])}
        placement = placements.get(attributes["data-adserve-slot"])
        collapse = attributes.get("data-adserve-collapse")
        if collapse not in ("never", "on_empty", "before_fetch"):
            collapse = placement.collapse if placement else "never"
        kind = attributes.get("data-adserve-type") or (placement.type if placement else None)
        if collapse == "before_fetch" or kind not in ("display", "recs"):
            return match[0]
        tag = match["attributes"] + ' aria-busy="true"'
        if kind == "recs":
            count = attributes.get("data-adserve-count", "")
            count = int(count) if count.isdigit() and int(count) else placement.count if placement else 6
            tiles = [_tile(None)] * min(count, MAX_ITEMS)
            footer = attributes.get("data-adserve-footer")
            footer = f'<span class="adserve-about">{escape(footer)}</span>' if footer else ""
            return (f'<div{_with_class(tag, "adserve-recs")} role="region">'
                    f'{_widget_inner(attributes.get("data-adserve-title"), tiles)}{footer}</div>')
        sizes = (re.split(r"[\s,]+", attributes["data-adserve-sizes"].strip())
                 if attributes.get("data-adserve-sizes") else placement.sizes if placement else [])
        sizes = [size for size in sizes if re.fullmatch(r"\d+x\d+", size)]
        if not sizes:
            return match[0]
        name = "adserve-box-" + "-".join(sizes)
        rules[name] = _box_rules(f".{name}", sizes)
        return f'<div{_with_class(tag, f"adserve-display {name}")}></div>'

    page = EMPTY_SLOT.sub(reserve, page)
    style = f"<style>{BASE_CSS}{''.join(rules.values())}</style>\n"
    head = page.find("</head>")
    return page[:head] + style + page[head:] if head >= 0 else style + page


def _box_rules(selector: str, sizes: list[str]) -> str:
    """CSS giving ``selector`` the loader's box for each viewport width: the narrowest size below
    every size's width, else the box of all the sizes that fit."""
    widths = sorted({int(size.split("x")[0]) for size in sizes})
    css = ""
    for width in widths:
        box = reserved_box([s for s in sizes if int(s.split("x")[0]) <= width])
        rule = f"{selector}{{min-width:{box[0]}px;min-height:{box[1]}px}}"
        css += rule if width == widths[0] else f"@media (min-width:{width}px){{{rule}}}"
    return css


def _with_class(attributes: str, names: str) -> str:
    """Element ``attributes`` (markup) with the class ``names`` added."""
    found = re.search(r'\bclass="([^"]*)"', attributes)
    if found is None:
        return f'{attributes} class="{names}"'
    return f'{attributes[:found.start(1)]}{found[1]} {names}{attributes[found.end(1):]}'


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


def _widget_inner(title: str | None, tiles: list[str]) -> str:
    heading = f'<h2 class="adserve-recs-heading">{escape(title)}</h2>' if title else ""
    return f'{heading}<ul class="adserve-recs-list">{"".join(tiles)}</ul>'


def _widget(slot_id: str, title: str | None, tiles: list[str], state: str, attributes: str) -> str:
    label = f' aria-label="{escape(title)}"' if title else ""
    empty = " adserve-empty" if state == "empty" else ""
    return (f'<div id="{escape(slot_id)}" class="adserve-recs{empty}" role="region"{label} '
            f'data-adserve-state="{state}"{attributes}>{_widget_inner(title, tiles)}</div>')


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
