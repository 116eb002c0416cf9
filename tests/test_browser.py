"""The demo page in headless Chromium, through the public loader, against a live server."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from adserve.catalog import Item
from adserve.events import log_files, read_events
from adserve.render import render_slot, reserve_slots
from adserve.server.app import create_app

from .conftest import require
from .test_render import Tags
from .test_server import edit

pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Cumulative layout shift, as Chrome's Core Web Vitals count it (shifts not caused by input).
CLS_OBSERVER = """
window.__cls = {value: 0, observer: new PerformanceObserver(function (list) {
  list.getEntries().forEach(function (e) { if (!e.hadRecentInput) window.__cls.value += e.value; });
})};
window.__cls.observer.observe({type: "layout-shift", buffered: true});
"""
CLS_TOTAL = """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
  window.__cls.observer.takeRecords().forEach(e => { if (!e.hadRecentInput) window.__cls.value += e.value; });
  resolve(window.__cls.value);
})))"""
NEXT_FRAMES = "() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))"
ALL_SETTLED = "[...document.querySelectorAll('[data-adserve-slot]')].every(e => e.dataset.adserveState)"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "mobile": {"width": 390, "height": 844}}
CLS_GOAL = 0.05  # Google rates <= 0.1 good
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


async def fake_landing_pages(context):
    await context.route(lambda url: urlsplit(url).hostname.endswith(".example"),
                        lambda route: route.fulfill(status=200, content_type="text/html",
                                                    body="<h1>landing page</h1>"))


async def open_page(browser, url, height=800, fake_landings=True):
    """The page, with landing pages faked; playwright's request routing also answers CORS
    preflights itself, so a CORS test must go without it."""
    context = await browser.new_context(viewport={"width": 1280, "height": height})
    if fake_landings:
        await fake_landing_pages(context)
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


WATCH = """(selector) => new Promise((resolve) => {
  // An observer created after the loader's: the browser delivers to observers in creation order,
  // so when this one hears of a change, the loader has already started or cleared its timer.
  new IntersectionObserver((entries, self) => { self.disconnect(); resolve(entries[0].intersectionRatio); },
                           {threshold: [0, 0.5, 1]}).observe(document.querySelector(selector));
})"""


async def test_impression_fires_only_once_the_slot_is_in_view(browser, site, workdir):
    """On the page's own (paused) clock: the one-second rule is checked to the millisecond."""
    base, _ = site
    context = await browser.new_context(viewport={"width": 1280, "height": 700})
    await context.clock.install()
    await context.clock.pause_at(1_800_000_000_000)
    page = await context.new_page()
    await page.goto(base + "/")
    await page.wait_for_selector("[data-testid=you-might-like][data-adserve-state]", state="attached")
    selector = "[data-testid=sidebar-300x250]"
    slot = page.locator(selector)
    await slot.wait_for(state="attached")
    slot_id = await slot.get_attribute("id")
    seen = lambda: [e for e in events(workdir, "impression") if e["slot"] == slot_id]
    viewed = lambda: slot.get_attribute("data-adserve-viewed")
    assert await page.evaluate(WATCH, selector) < 0.5  # below the fold
    await page.clock.run_for(60_000)
    assert await viewed() is None  # no impression however long it stays out of view
    await slot.scroll_into_view_if_needed()
    assert await page.evaluate(WATCH, selector) >= 0.5
    await page.clock.run_for(999)
    assert await viewed() is None  # in view, but not yet for one second
    await page.clock.run_for(1)
    assert await viewed() == "true"
    for _ in range(1200):  # the pixel is on its way: wait for it to be logged (a hang guard)
        if seen():
            break
        await asyncio.sleep(0.05)
    assert len(seen()) == 1 and seen()[0]["counted"]
    await context.close()


def set_collapse(workdir, placement: str, collapse: str) -> None:
    edit(workdir, "site.yaml", f"  - id: {placement}\n", f"  - id: {placement}\n    collapse: {collapse}\n")


@pytest.mark.parametrize("collapse, height", [("never", 600), ("on_empty", 0), ("before_fetch", 0)])
async def test_unfilled_slot_keeps_or_gives_up_its_space(browser, make_server, aiohttp_server, workdir,
                                                          collapse, height):
    edit(workdir, "campaigns/display.yaml", "    name: Northwind Outdoor remnant\n",
         "    name: Northwind Outdoor remnant\n    status: paused\n")
    if collapse != "never":  # the default: no shift
        set_collapse(workdir, "sidebar-tall", collapse)
    live = await aiohttp_server(create_app(make_server()))
    page, _ = await open_page(browser, f"http://127.0.0.1:{live.port}/")
    tall = page.locator("[data-testid=sidebar-tall]")
    await page.wait_for_selector("[data-testid=sidebar-tall][data-adserve-state]", state="attached")
    assert await tall.get_attribute("data-adserve-state") == "empty"
    assert await tall.is_hidden()
    assert await tall.locator("iframe").count() == 0
    box = await tall.bounding_box()
    assert (box["height"] if box else 0) == height


async def hold_loader(page) -> asyncio.Event:
    """Holds the loader script until the returned event is set: a slow ad server."""
    loaded = asyncio.Event()

    async def hold(route):
        await loaded.wait()
        await route.continue_()

    await page.route("**/static/adserve*.js", hold)
    return loaded


async def held_page(browser, url, viewport, html=None):
    """The page (or ``html`` served at ``url``) painted with its slot request held: what the
    reader sees before the answer."""
    context = await browser.new_context(viewport=VIEWPORTS[viewport])
    if html is not None:
        await context.route(url, lambda route: route.fulfill(content_type="text/html", body=html))
    answer, sent = asyncio.Event(), []

    async def hold(route):
        sent.append(route.request.post_data_json)
        await answer.wait()
        await route.continue_()

    page = await context.new_page()
    await page.route("**/v1/slots", hold)
    await page.goto(url)
    await page.evaluate(NEXT_FRAMES)
    return page, answer, sent


async def boxes(page, *slots):
    return [await page.locator(f"[data-testid={slot}]").bounding_box() for slot in slots]


@pytest.mark.parametrize("viewport, banner", [("desktop", (970, 250)), ("mobile", (320, 50))])
async def test_first_frame_has_the_space_while_the_loader_is_slow(browser, site, viewport, banner):
    """The page's own markup reserves every slot: the page is shown while the ad server has not
    even sent the loader (it does not wait for it), and the loader and the answer keep each box."""
    base, _ = site
    context = await browser.new_context(viewport=VIEWPORTS[viewport])
    page = await context.new_page()
    loader = await hold_loader(page)
    await page.goto(base + "/", wait_until="domcontentloaded")
    await page.evaluate(NEXT_FRAMES)
    assert await page.locator("[data-testid=headline]").is_visible()
    slots = ("top-banner", "special-offer", "sidebar-tall", "you-might-like", "related-articles", "take-a-look")
    before = await boxes(page, *slots)
    assert (before[0]["width"], before[0]["height"]) == banner  # the largest size the viewport fits
    assert (before[1]["height"], before[2]["height"]) == (250, 600)
    for slot, count in (("you-might-like", 6), ("related-articles", 4), ("take-a-look", 4)):
        assert await page.locator(f"[data-testid={slot}] li.adserve-rec--skeleton").count() == count
    loader.set()
    await page.wait_for_function(ALL_SETTLED)
    assert await page.locator("[data-testid=you-might-like] li:not(.adserve-rec--skeleton)").count() == 6
    assert await boxes(page, *slots) == before
    await context.close()


MARKUP_PAGE = """<!doctype html><html><head><title>Publisher</title>
<script type="application/json" id="adserve-page">{"item_id": "p-1", "section": "politics", "title": "P"}</script>
<script src="/static/adserve.js" async></script></head><body><div style="width:400px">
<div data-adserve-slot="" data-adserve-type="display" data-adserve-sizes="728x90, 300x250 320x50"
     data-testid="fits"></div>
<div data-adserve-slot="" data-adserve-type="display" data-adserve-sizes="336x280" data-testid="kept"></div>
<div data-adserve-slot="" data-adserve-type="display" data-adserve-sizes="336x280"
     data-adserve-collapse="on_empty" data-testid="collapsed"></div>
<div data-adserve-slot="you-might-like" data-adserve-count="3" data-testid="counted"></div>
<p data-testid="below">end</p></div></body></html>"""


async def test_markup_gives_sizes_counts_and_collapse(browser, site):
    """A publisher's own markup, no placement needed: the sizes that fit a 400 px column, an
    item count, and collapse per slot (no display campaign has a 336x280 creative)."""
    base, _ = site
    page, answer, sent = await held_page(browser, base + "/publisher", "desktop", MARKUP_PAGE)
    fits, kept, collapsed = await boxes(page, "fits", "kept", "collapsed")
    assert fits["height"] == 250  # 300x250: the largest that fits (728x90 is wider, 320x50 lower)
    assert (kept["height"], collapsed["height"]) == (280, 280)
    assert await page.locator("[data-testid=counted] li.adserve-rec--skeleton").count() == 3
    slots = sent[0]["slots"]
    assert [s.get("sizes") for s in slots] == [["300x250", "320x50"], ["336x280"], ["336x280"], None]
    assert slots[3]["count"] == 3
    below = (await boxes(page, "below"))[0]
    answer.set()
    await page.wait_for_function(ALL_SETTLED)
    states = [await page.get_attribute(f"[data-testid={s}]", "data-adserve-state")
              for s in ("fits", "kept", "collapsed", "counted")]
    assert states == ["filled", "empty", "empty", "filled"]
    assert await page.locator("[data-testid=counted] li").count() == 3
    assert await page.locator("[data-testid=collapsed]").bounding_box() is None
    assert (await boxes(page, "kept"))[0]["height"] == 280
    assert (await boxes(page, "below"))[0]["y"] == below["y"] - 280  # only the collapse moved it
    await page.context.close()


async def test_loader_keeps_a_larger_box_the_page_reserved(browser, site):
    """The page's CSS picks a size by viewport width, the loader by column width: where the page
    reserved more, the loader keeps that box (shrinking it would move the painted page) and still
    asks only for the sizes that fit the column."""
    base, _ = site
    html = reserve_slots('<!doctype html><html><head><script src="/static/adserve.js" async></script>'
                         '</head><body><div style="width:400px"><div data-adserve-slot="" data-adserve-type='
                         '"display" data-adserve-sizes="728x90 300x250" data-testid="slot"></div></div></body></html>', {})
    page, answer, sent = await held_page(browser, base + "/publisher", "desktop", html)
    box = (await boxes(page, "slot"))[0]
    assert (box["width"], box["height"]) == (728, 250)
    assert sent[0]["slots"][0]["sizes"] == ["300x250"]
    answer.set()
    await page.context.close()


@pytest.mark.parametrize("viewport, banner, sizes", [("desktop", (970, 250), ["970x250", "728x90", "320x50"]),
                                                    ("mobile", (320, 50), ["320x50"])])
async def test_space_is_reserved_before_the_answer(browser, make_server, aiohttp_server, workdir,
                                                   viewport, banner, sizes):
    set_collapse(workdir, "sidebar-tall", "before_fetch")
    live = await aiohttp_server(create_app(make_server()))
    page, answer, sent = await held_page(browser, f"http://127.0.0.1:{live.port}/", viewport)
    slots = ("top-banner", "special-offer", "you-might-like", "related-articles", "dont-miss-this")
    before = await boxes(page, *slots)
    top, offer = before[0], before[1]
    assert (top["width"], top["height"]) == banner  # the largest size that fits the column
    assert offer["height"] == 250
    assert await page.locator("[data-testid=you-might-like] li.adserve-rec--skeleton").count() == 6
    assert await page.locator("[data-testid=dont-miss-this] li.adserve-rec--skeleton").count() == 3
    assert await page.get_attribute("[data-testid=you-might-like]", "aria-busy") == "true"
    assert (await page.locator("[data-testid=sidebar-tall]").bounding_box())["height"] == 0
    answer.set()
    await page.wait_for_function(ALL_SETTLED)
    assert await page.get_attribute("[data-testid=sidebar-tall]", "data-adserve-state") == "filled"
    assert await boxes(page, *slots) == before  # the answer took exactly the space reserved
    requested = {slot["placement"]: slot for slot in sent[0]["slots"]}
    assert requested["top-banner"]["sizes"] == sizes  # only creatives that fit the column
    await page.context.close()


async def test_creative_cannot_touch_the_host_page(browser, make_server, aiohttp_server, workdir):
    path = workdir / "config" / "campaigns" / "display.yaml"
    path.write_text(path.read_text() + ESCAPING_CREATIVE)
    live = await aiohttp_server(create_app(make_server()))
    url = f"http://127.0.0.1:{live.port}/"
    page, dialogs = await open_page(browser, url)
    frame = page.frame_locator("[data-testid=sidebar-300x250] iframe")
    await frame.locator("#hostile").wait_for()
    await frame.locator("#hostile", has_text="ran:").wait_for()  # the script ran to its end
    assert await frame.locator("#hostile").text_content() == "ran:"  # every attempt threw
    assert dialogs == []
    assert page.url == url
    assert "PWNED" not in await page.title()
    assert "PWNED" not in await page.evaluate("document.body.innerText")
    assert await page.locator("[data-testid=headline]").is_visible()


async def test_hot_reload_shows_on_the_next_page_view(browser, site, workdir):
    base, server = site
    page, _ = await open_page(browser, base + "/")
    assert await page.get_attribute("[data-testid=top-banner]", "data-adserve-campaign") == "12180"
    serving = server.runtime
    edit(workdir, "campaigns/display.yaml", "    name: Civic Motors EV launch (desktop)\n",
         "    name: Civic Motors EV launch (desktop)\n    status: paused\n")
    for _ in range(1200):  # the file watcher swaps the runtime (a hang guard, not a time limit)
        if server.runtime is not serving:
            break
        await asyncio.sleep(0.05)
    await page.reload()
    await page.wait_for_selector("[data-testid=top-banner][data-adserve-state]")
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




async def layout_shift(browser, url, viewport, answer_after_scroll=False):
    """CLS of one page view, scrolled once. The loader is held until the page has painted, and
    the slot answer until the loader's reservation has (and, for a slow answer, until after the
    scroll): each lands on a page the reader already sees, whatever the machine's speed."""
    context = await browser.new_context(viewport=VIEWPORTS[viewport])
    await fake_landing_pages(context)
    await context.add_init_script(CLS_OBSERVER)
    answer = asyncio.Event()

    async def hold(route):
        await answer.wait()
        await route.continue_()

    page = await context.new_page()
    await page.route("**/v1/slots", hold)
    loader = await hold_loader(page)
    await page.goto(url, wait_until="domcontentloaded")
    await page.evaluate(NEXT_FRAMES)  # painted before the loader ran: only the page reserves space
    loader.set()
    await page.wait_for_function("window.adserve")
    await page.evaluate(NEXT_FRAMES)  # the loader's reservation painted, still waiting for the answer
    if not answer_after_scroll:
        answer.set()
        await page.wait_for_function(ALL_SETTLED)
    await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight / 2)")
    await page.evaluate(NEXT_FRAMES)
    answer.set()
    await page.wait_for_function(ALL_SETTLED)
    await page.wait_for_load_state("networkidle")  # thumbnails and creatives in
    cls = await page.evaluate(CLS_TOTAL)
    states = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-adserve-slot]')]"
        ".map(e => [e.dataset.adserveSlot, e.dataset.adserveState]))")
    await context.close()
    return cls, states


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("scenario", ["fill", "no-fill", "slow-answer"])
async def test_slots_do_not_shift_the_page(browser, make_server, aiohttp_server, workdir, viewport, scenario):
    if scenario == "no-fill":  # nothing left for the tall sidebar slot
        edit(workdir, "campaigns/display.yaml", "    name: Northwind Outdoor remnant\n",
             "    name: Northwind Outdoor remnant\n    status: paused\n")
    live = await aiohttp_server(create_app(make_server()))
    cls, states = await layout_shift(browser, f"http://127.0.0.1:{live.port}/", viewport,
                                     answer_after_scroll=scenario == "slow-answer")
    assert states["you-might-like"] == states["special-offer"] == "filled"
    assert states["sidebar-tall"] == ("empty" if scenario == "no-fill" else "filled")
    print(f"CLS {viewport} {scenario}: {cls:.3f}")
    assert cls <= CLS_GOAL


# (tag, class, min-width, min-height) of a slot and everything in it but the vendor footer and
# the class of the page's own reservation (reserve_slots)
LOADER_BUILD = """slot => [slot, ...slot.querySelectorAll('*')].filter(e => !e.closest('.adserve-about'))
  .map(e => [e.tagName.toLowerCase(), (e.getAttribute('class') || '').replace(/ adserve-box-\\S+/, ''),
             e.style.minWidth, e.style.minHeight])"""


def server_build(html: str) -> list[list[str]]:
    def box(tag, attrs):
        rules = dict(rule.split(":") for rule in (attrs.get("style") or "").split(";") if rule)
        return [rules.get("min-width", ""), rules.get("min-height", "")] if tag == "div" else ["", ""]
    return [[tag, attrs.get("class") or "", *box(tag, attrs)] for tag, attrs in Tags(html).tags]


async def test_server_rendered_slots_are_built_like_the_loaders(browser, site):
    """The markup lives twice (loader and render.py): one stylesheet must fit both."""
    base, server = site
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    async with page.expect_response("**/v1/slots") as response:
        await page.goto(base + "/")
    answer = (await (await response.value).json())["slots"]
    await page.wait_for_function(ALL_SETTLED)
    placements = server.runtime.config.placements
    compared = set()
    for slot in await page.query_selector_all("[data-adserve-slot]"):
        name, slot_id = await slot.get_attribute("data-adserve-slot"), await slot.get_attribute("id")
        html = render_slot(slot_id, answer[slot_id], await slot.get_attribute("data-adserve-title"),
                           placements[name])
        assert await slot.evaluate(LOADER_BUILD) == server_build(html), name
        compared.add(answer[slot_id]["type"])
    assert compared == {"display", "recs"}
    await context.close()


async def test_a_short_widget_keeps_its_reserved_size(browser, site):
    """An answer with fewer items than the widget reserved (a small catalog) leaves blank tiles."""
    base, _ = site
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])

    async def two_short(route):
        response = await route.fetch()
        answer = await response.json()
        widget = next(fill for fill in answer["slots"].values() if len(fill.get("items", ())) == 6)
        widget["items"] = widget["items"][:4]
        await route.fulfill(response=response, json=answer)

    await context.route("**/v1/slots", two_short)
    page = await context.new_page()
    await page.goto(base + "/")
    await page.evaluate(NEXT_FRAMES)
    skeleton = await page.locator("[data-testid=you-might-like]").bounding_box()
    await page.wait_for_function(ALL_SETTLED)
    widget = page.locator("[data-testid=you-might-like]")
    assert await widget.locator("li:not(.adserve-rec--skeleton)").count() == 4
    assert await widget.locator("li.adserve-rec--skeleton").evaluate_all(
        "tiles => tiles.map(t => getComputedStyle(t).visibility)") == ["hidden", "hidden"]
    assert await widget.bounding_box() == skeleton
    await context.close()
