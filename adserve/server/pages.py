"""The demo article pages, served from the package.

The demo pages use only the public loader, exactly as a publisher's template would: the server
fills in the article's headline, page context and the loader's current versioned URL, and reserves
each slot's space in the markup (``render.reserve_slots``), the async loader does the rest. The loader and the other static files are served by ``static.py``.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Mapping

import orjson
from aiohttp import web

from ..model import Placement
from ..render import reserve_slots
from .static import STATIC

TEMPLATE = (STATIC / "demo.html").read_text(encoding="utf-8")
# JSON inside <script>: "</script>" would end the block and "<!--<script>" would make the parser
# swallow the loader's tag, so <, > and & are written as JSON escapes (the JSON value is unchanged)
SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin",
                "Cache-Control": "no-store"}


def render_article(item, page_url: str, loader_url: str, placements: Mapping[str, Placement]) -> str:
    """The demo article, its slots' space reserved in the markup: the loader stays async, so
    the page is shown whether or not the ad server answers, and does not move when it does."""
    published = (dt.datetime.fromtimestamp(item.published, dt.timezone.utc).strftime("%B %d, %Y %H:%M UTC")
                 if item.published else "")
    context = {"item_id": item.item_id, "url": page_url, "title": item.title,
               "section": item.section, "keywords": [item.section] if item.section else []}
    context_json = orjson.dumps(context).decode().translate(SCRIPT_SAFE)
    return reserve_slots(TEMPLATE.replace("{{loader}}", html.escape(loader_url))
                         .replace("{{context}}", context_json)
                         .replace("{{title}}", html.escape(item.title))
                         .replace("{{section}}", html.escape(item.section or "news"))
                         .replace("{{published}}", html.escape(published)), placements)


def demo_item(catalog):
    """The article the demo's front page shows: the first world-news item of the catalog."""
    world = sorted(i for i, item in catalog.items.items() if item.section == "world" and item.live)
    return catalog.items[world[0]] if world else next(iter(catalog.items.values()), None)


def routes(catalog, loader_url: Callable[[], str],
           placements: Callable[[], Mapping[str, Placement]]) -> list[web.RouteDef]:
    async def article(request: web.Request) -> web.Response:
        item_id = request.match_info.get("item_id")
        item = catalog.live(item_id) if item_id else demo_item(catalog)
        if item is None:
            raise web.HTTPNotFound(text="no such article")
        return web.Response(text=render_article(item, str(request.url), loader_url(), placements()),
                            content_type="text/html", headers=PAGE_HEADERS)

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    return [web.get("/", article), web.get("/favicon.ico", no_icon), web.get("/articles/{item_id}", article)]
