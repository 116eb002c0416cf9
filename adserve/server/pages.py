"""The JS loader, demo creatives and the demo article page, served from the package."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent.parent / "static"
# The demo page and creatives are ours; they still get a strict policy, as a publisher page would.
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin"}


async def demo_page(request: web.Request) -> web.Response:
    return web.FileResponse(STATIC / "demo.html", headers=PAGE_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", demo_page)
    app.router.add_static("/static/", STATIC, append_version=False)
