"""The demo page in headless Chromium, through the public loader, against a live server."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from adserve.catalog import Item
from adserve.events import log_files, read_events
from adserve.server.app import create_app

from .conftest import require
from .test_server import edit

pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ESCAPING_CREATIVE = """
  - id: 66601
    name: Hostile creative (test)
    advertiser: Mallory
    flight: {start: 2026-01-01T00:00:00Z, end: 2030-01-01T00:00:00Z}
    tier: sponsorship
    price: {model: cpm, amount: 1}
    pacing: asap
    targeting: {placements: [sidebar-300x250]}
    creatives:
      - id: hostile-300x250
        size: 300x250
        format: html
        landing_url: https://mallory.example/
        variants:
          - id: A
            html: >-
              <p id="hostile">hello</p><script>
              var tries = [];
              try { top.document.body.innerHTML = "PWNED"; tries.push("top.document"); } catch (e) {}
              try { parent.document.title = "PWNED"; tries.push("parent.document"); } catch (e) {}
              try { alert("PWNED"); } catch (e) {}
              try { top.location.href = "https://mallory.example/"; tries.push("top.location"); } catch (e) {}
              document.getElementById("hostile").textContent = "ran:" + tries.join(",");
              </script>
"""


@pytest.fixture
async def browser():
    executable = require("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def site(aiohttp_server, make_server, workdir):
    """A live server on a loopback port; returns (base URL, AdServer)."""
    server = make_server()
    live = await aiohttp_server(create_app(server))
    return f"http://127.0.0.1:{live.port}", server


async def open_page(browser, url, height=800, fake_landings=True):
    """The page, with landing pages faked; playwright's request routing also answers CORS
    preflights itself, so a CORS test must go without it."""
    context = await browser.new_context(viewport={"width": 1280, "height": height})
    if fake_landings:
        await context.route(lambda url: urlsplit(url).hostname.endswith(".example"),
                            lambda route: route.fulfill(status=200, content_type="text/html",
                                                        body="<h1>landing page</h1>"))
    page = await context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))
    await page.goto(url)
    await page.wait_for_selector("[data-testid=you-might-like][data-adserve-state]", state="attached")
    return page, dialogs


def events(workdir, kind):
    return [e for e in read_events(log_files(workdir / "var" / "events")) if e["type"] == kind]


async def test_slots_fill_through_one_request(browser, site, workdir):
    base, _ = site
    page, _ = await open_page(browser, base + "/")
    assert len(events(workdir, "decision")) == 1  # one slot request for the whole page
    recs = page.locator("[data-testid=you-might-like] li")
    assert await recs.count() == 6
    assert await page.locator("[data-testid=you-might-like] .adserve-sponsored").count() == 2
    assert await page.get_attribute("[data-testid=you-might-like]", "aria-label") == "You Might Like"
    frame = page.locator("[data-testid=special-offer] iframe")
    assert await frame.get_attribute("sandbox") == "allow-scripts allow-popups allow-popups-to-escape-sandbox"
    assert (await frame.get_attribute("width"), await frame.get_attribute("height")) == ("300", "250")
    for slot in ("related-articles", "take-a-look", "dont-miss-this", "sidebar-300x250", "top-banner"):
        assert await page.get_attribute(f"[data-testid={slot}]", "data-adserve-state") == "filled", slot
    reader = await page.evaluate("localStorage.getItem('adserve_reader')")
    assert reader and events(workdir, "decision")[0]["user"] == reader


async def test_display_click_reaches_landing_through_signed_redirect(browser, site, workdir):
    base, _ = site
    page, _ = await open_page(browser, base + "/")
    requests = []
    page.context.on("request", lambda request: requests.append(request))
    frame = page.frame_locator("[data-testid=sidebar-300x250] iframe")
    async with page.expect_popup() as popup_info:
        await frame.locator("a").click()
    popup = await popup_info.value
    await popup.wait_for_load_state()
    landing = "https://harborbank.example/winter-savings?utm_source=capitolledger"
    reached = [r for r in requests if r.url == landing]
    assert reached, [r.url for r in requests]
    assert reached[0].redirected_from.url.startswith(base + "/t/c?t=")
    clicks = events(workdir, "click")
    assert len(clicks) == 1 and clicks[0]["campaign"] == 12174 and clicks[0]["counted"]


async def test_a_headline_with_script_markup_leaves_the_loader_working(browser, site):
    base, server = site
    server.catalog.upsert(Item(item_id="tricky", url="/articles/tricky", title="Quote <!--<script> here",
                               section="world"), persist=False)
    page, _ = await open_page(browser, base + "/articles/tricky")
    assert await page.get_attribute("[data-testid=you-might-like]", "data-adserve-state") == "filled"
    assert await page.inner_text("[data-testid=headline]") == "Quote <!--<script> here"


async def test_impression_fires_only_once_the_slot_is_in_view(browser, site, workdir):
    base, _ = site
    page, _ = await open_page(browser, base + "/", height=700)
    slot = page.locator("[data-testid=sidebar-300x250]")
    slot_id = await slot.get_attribute("id")
    seen = lambda: [e for e in events(workdir, "impression") if e["slot"] == slot_id]
    await page.wait_for_timeout(1600)
    assert seen() == []  # below the fold: no impression however long we wait
    await slot.scroll_into_view_if_needed()
    await page.wait_for_timeout(400)
    assert seen() == []  # in view, but not yet for one second
    await page.wait_for_function(
        "document.querySelector('[data-testid=sidebar-300x250]').dataset.adserveViewed === 'true'")
    await page.wait_for_timeout(200)
    assert len(seen()) == 1 and seen()[0]["counted"]


async def test_unfilled_slot_collapses(browser, make_server, aiohttp_server, workdir):
    edit(workdir, "campaigns/display.yaml", "    name: Northwind Outdoor remnant\n",
         "    name: Northwind Outdoor remnant\n    status: paused\n")
    live = await aiohttp_server(create_app(make_server()))
    page, _ = await open_page(browser, f"http://127.0.0.1:{live.port}/")
    tall = page.locator("[data-testid=sidebar-tall]")
    assert await tall.get_attribute("data-adserve-state") == "empty"
    assert await tall.is_hidden()
    assert await tall.locator("iframe").count() == 0


async def test_creative_cannot_touch_the_host_page(browser, make_server, aiohttp_server, workdir):
    path = workdir / "config" / "campaigns" / "display.yaml"
    path.write_text(path.read_text() + ESCAPING_CREATIVE)
    live = await aiohttp_server(create_app(make_server()))
    url = f"http://127.0.0.1:{live.port}/"
    page, dialogs = await open_page(browser, url)
    frame = page.frame_locator("[data-testid=sidebar-300x250] iframe")
    await frame.locator("#hostile").wait_for()
    await page.wait_for_timeout(300)
    assert await frame.locator("#hostile").text_content() == "ran:"  # every attempt threw
    assert dialogs == []
    assert page.url == url
    assert "PWNED" not in await page.title()
    assert "PWNED" not in await page.evaluate("document.body.innerText")
    assert await page.locator("[data-testid=headline]").is_visible()


async def test_hot_reload_shows_on_the_next_page_view(browser, site, workdir):
    base, _ = site
    page, _ = await open_page(browser, base + "/")
    assert await page.get_attribute("[data-testid=top-banner]", "data-adserve-campaign") == "12180"
    edit(workdir, "campaigns/display.yaml", "    name: Civic Motors EV launch (desktop)\n",
         "    name: Civic Motors EV launch (desktop)\n    status: paused\n")
    for _ in range(40):
        await page.wait_for_timeout(150)
        await page.reload()
        await page.wait_for_selector("[data-testid=top-banner][data-adserve-state]")
        if await page.get_attribute("[data-testid=top-banner]", "data-adserve-campaign") != "12180":
            break
    assert await page.get_attribute("[data-testid=top-banner]", "data-adserve-campaign") == "90001"


PUBLISHER_PAGE = """<!doctype html><html><head><title>Publisher</title>
<script type="application/json" id="adserve-page">{"item_id": "p-1", "section": "politics",
 "keywords": ["iran"], "title": "Publisher page"}</script>
<script src="%s/static/adserve.js" async></script></head><body>
<div data-adserve-slot="special-offer" data-testid="special-offer"></div>
<div data-adserve-slot="you-might-like" data-testid="you-might-like"></div></body></html>"""


@pytest.mark.parametrize("allowed", [True, False])
async def test_loader_on_another_origin_needs_cors_consent(browser, site, workdir, aiohttp_server, allowed):
    from aiohttp import web

    base, server = site
    async def publisher_page(request):
        return web.Response(text=PUBLISHER_PAGE % base, content_type="text/html")

    publisher = web.Application()
    publisher.router.add_get("/", publisher_page)
    live = await aiohttp_server(publisher)
    origin = f"http://127.0.0.1:{live.port}"
    if allowed:
        edit(workdir, "site.yaml", "    - http://localhost:8080\n", f"    - http://localhost:8080\n    - {origin}\n")
        await server.reload_config()
    page, _ = await open_page(browser, origin + "/", fake_landings=False)
    state = await page.get_attribute("[data-testid=special-offer]", "data-adserve-state")
    assert state == ("filled" if allowed else "empty")
    # a JSON POST needs a preflight: an origin that is not allowed never gets to send it
    assert len(events(workdir, "decision")) == (1 if allowed else 0)
