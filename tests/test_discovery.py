"""Catalog discovery: slot requests only suggest pages; the server reads the pages themselves.

A local aiohttp server plays the publisher's site. Every slot request below carries a planted
title, image and section: none of them may ever reach the catalog.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import re

import orjson
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adserve.catalog_discovery import _parsed_on_site, on_site
from adserve.server.app import SERVER, create_app

from .conftest import EXAMPLE_REQUEST
from .test_server import edit, post_slots

PLANTED = {"title": "PLANTED headline", "image_url": "https://evil.example/planted.jpg", "section": "planted"}


def page(*head: str, body: str = "") -> web.Response:
    return web.Response(text=f"<!doctype html><html><head>{''.join(head)}</head><body>{body}</body></html>",
                        content_type="text/html")


def og(prop: str, value: str) -> str:
    return f'<meta property="{prop}" content="{value}">'


def json_ld(data: dict) -> str:
    return f'<script type="application/ld+json">{orjson.dumps(data).decode()}</script>'


def redirect(location: str) -> web.Response:
    raise web.HTTPFound(location)


GOOD = (og("og:title", "Council passes the budget &amp; more"), og("og:image", "/img/budget.jpg"),
        og("article:section", "Politics"), og("article:published_time", "2026-11-20T08:00:00Z"))
PAGES = {
    "good": lambda: page(*GOOD),
    "ld": lambda: page(json_ld({"@context": "https://schema.org", "@graph": [
        {"@type": "WebPage"}, {"@type": "NewsArticle", "headline": "Storm season ends early",
                               "image": [{"@type": "ImageObject", "url": "/img/storm.jpg"}],
                               "datePublished": "2026-11-21T09:30:00-05:00", "articleSection": ["Weather"]}]})),
    "bare": lambda: page("<title>Only a title tag</title>", body="<h1>No metadata here</h1>"),
    "huge-tail": lambda: page("<title>x</title>", body="x" * 200_000 + og("og:title", "Past the cap")),
    "huge-head": lambda: page(og("og:title", "Metadata first, then a long page"), body="y" * 5_000_000),
    "away": lambda: redirect("https://evil.example/articles/away"),
    "hop": lambda: redirect("/articles/hop-target"),
    "hop-target": lambda: page(og("og:title", "Moved within the site")),
    "offsite-image": lambda: page(og("og:title", "Photo essay"), og("og:image", "https://evil.example/x.jpg")),
    "json": lambda: web.json_response({"og:title": "Not a page"}),
    "claims-other": lambda: page(og("og:title", "Some page"),
                                 '<script type="application/json" id="adserve-page">{"item_id": "other"}</script>'),
    "copy-of-good": lambda: page(*GOOD, '<link rel="canonical" href="/articles/good">'),
    "og-copy-of-good": lambda: page(og("og:url", "/articles/good#top"), *GOOD),
}


@pytest.fixture
async def site(aiohttp_server):
    """The publisher's site; ``/flood/N`` pages wait at ``gate`` until a test opens it."""
    gate = asyncio.Event()

    async def article(request):
        name = request.match_info["name"]
        if name == "slow":
            await asyncio.Event().wait()  # never answers; discovery's timeout must end it
        return PAGES[name]()

    async def flood(request):
        await gate.wait()
        return page(og("og:title", f"Flood page {request.match_info['n']}"))

    app = web.Application()
    app.router.add_get("/articles/{name}", article)
    app.router.add_get("/flood/{n}", flood)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}", gate


@pytest.fixture
async def adserver(site, workdir, make_server, aiohttp_client):
    origin, _ = site
    edit(workdir, "site.yaml", "  unique_advertiser_per_page: true\n",
         f"    - {origin}\n  unique_advertiser_per_page: true\n  discovery: {{queue_size: 8, "
         "timeout_seconds: 0.5, fetches_per_second: 100, max_page_bytes: 65536}\n")
    server = make_server()
    client = await aiohttp_client(create_app(server))
    return client, server


def slot_request(item_id: str, url: str) -> dict:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["page"] = {"item_id": item_id, "url": url, **PLANTED}
    return body


def unix(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


async def outcomes(client) -> dict[str, int]:
    text = await (await client.get("/metrics")).text()
    return {m[1]: int(float(m[2])) for m in re.finditer(r'adserve_discovery_total\{outcome="(\w+)"\} (\S+)', text)}


def journal(workdir) -> bytes:
    path = workdir / "var" / "events" / "catalog-updates.jsonl"
    return path.read_bytes() if path.exists() else b""


async def test_pages_are_read_from_the_site_never_from_the_request(adserver, site, workdir):
    client, server = adserver
    origin, _ = site
    server.runtime.config.site.discovery.queue_size = 32  # room for every page, however fast the worker
    before = dict(server.catalog.items)
    names = ["good", *(n for n in PAGES if n not in ("good", "hop-target")), "slow"]
    for name in names:
        await post_slots(client, slot_request(name, f"{origin}/articles/{name}#comments"))
    await asyncio.wait_for(server.discovery.idle(), 60)
    found = {i: item for i, item in server.catalog.items.items() if i not in before}
    assert sorted(found) == ["good", "hop", "huge-head", "ld", "offsite-image"]
    assert await outcomes(client) == {"queued": 13, "discovered": 5, "refused": 7, "failed": 1}  # slow
    good = found["good"]
    assert (good.url, good.title, good.image_url, good.section, good.published) == (
        f"{origin}/articles/good", "Council passes the budget & more", f"{origin}/img/budget.jpg",
        "politics", unix("2026-11-20T08:00:00+00:00"))
    ld = found["ld"]
    assert (ld.title, ld.image_url, ld.section, ld.published) == (
        "Storm season ends early", f"{origin}/img/storm.jpg", "weather", unix("2026-11-21T09:30:00-05:00"))
    assert found["hop"].url == f"{origin}/articles/hop-target"
    assert found["offsite-image"].image_url is None  # images off the site's origins are dropped
    assert found["huge-head"].title == "Metadata first, then a long page"
    logged = [orjson.loads(line) for line in journal(workdir).splitlines()]
    assert sorted(e["item_id"] for e in logged) == sorted(found)  # through the catalog's journal
    assert not any(v in orjson.dumps(e).decode() for e in logged for v in PLANTED.values())


async def test_a_slot_request_never_writes_the_catalog(client, workdir):
    """With discovery off, a page the catalog does not know stays unknown: context, nothing more."""
    server = client.server.app[SERVER]
    server.runtime.config.site.discovery.enabled = False
    before = dict(server.catalog.items)
    for item_id in ("own-page", "planted"):
        body = slot_request(item_id, f"http://localhost:8080/articles/{item_id}")
        body["slots"] = [{"id": "w", "type": "recs", "count": 6}]
        widget = (await post_slots(client, body))["w"]
        assert len(widget["items"]) == 6 and item_id not in {i["item_id"] for i in widget["items"]}
    assert server.catalog.items == before and journal(workdir) == b""
    assert server.discovery.pending == 0


async def test_only_pages_on_the_sites_origins_are_fetched(adserver, site):
    client, server = adserver
    origin, _ = site
    known = next(iter(server.catalog.items))
    for item_id, url in (("planted", "https://evil.example/articles/planted"),
                         ("scheme", origin.replace("http", "ftp") + "/articles/good"),
                         ("userinfo", origin.replace("//", "//evil.example@") + "/articles/good"),
                         (known, f"{origin}/articles/good")):
        await post_slots(client, slot_request(item_id, url))
    assert server.discovery.pending == 0
    await asyncio.wait_for(server.discovery.idle(), 10)
    assert "planted" not in server.catalog.items


async def test_a_flood_of_unknown_pages_cannot_plant_or_grow_the_catalog(adserver, site, workdir):
    client, server = adserver
    origin, gate = site
    server.runtime.config.site.discovery.timeout_seconds = 60  # the gate, not the timeout, ends a fetch
    before = len(server.catalog.items)
    for round_ in range(2):  # the second round repeats the URLs: queued ones are not queued twice
        for n in range(150):
            await post_slots(client, slot_request(f"flood-{n}-{round_}", f"{origin}/flood/{n}"))
        assert len(server.catalog.items) == before and journal(workdir) == b""
        assert server.discovery.pending == 8  # the queue bound holds; one more page is being fetched
    assert await outcomes(client) == {"queued": 9, "dropped": 2 * (150 - 9)}
    gate.set()
    await asyncio.wait_for(server.discovery.idle(), 60)
    added = [i for i in server.catalog.items.values() if i.item_id.startswith("flood-")]
    assert len(added) == 9 and len(journal(workdir).splitlines()) == 9
    assert all(i.title.startswith("Flood page ") and i.image_url is None for i in added)
    assert (await outcomes(client))["discovered"] == 9
    assert not any(i.startswith("flood-") for i in server.recommender.popularity.top())


async def test_pages_are_fetched_no_faster_than_the_rate(adserver, site):
    client, server = adserver
    origin, _ = site
    server.runtime.config.site.discovery.fetches_per_second = 0.01  # one page per 100 s
    for name in ("good", "ld"):
        await post_slots(client, slot_request(name, f"{origin}/articles/{name}"))
    async def first_discovered():
        while "good" not in server.catalog.items:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(first_discovered(), 30)
    await asyncio.sleep(0.3)  # long enough for a worker without a rate limit to take the next page
    assert server.discovery.pending == 1 and "ld" not in server.catalog.items


@pytest.mark.parametrize("url, expected", [
    ("https://news.example/a/b?x=1#top", "https://news.example/a/b?x=1"),
    ("HTTPS://news.example/a", "https://news.example/a"),       # the scheme is case-blind
    (" https://news.example/a\n", "https://news.example/a"),    # what URL parsers strip
    ("https://news.ex\tample/a", "https://news.example/a"),     # ... and remove
    ("http://127.0.0.1:8080?q#f", "http://127.0.0.1:8080?q"),
    ("https://news.example.evil.example/a", None),
    ("https://news.example@evil.example/a", None),
    ("https://evil.example/https://news.example/a", None),
    ("http://news.example/a", None),
    ("https://news.example:443/a", None),
    ("https://NEWS.example/a", None),
    ("/a/b", None),
])
def test_what_counts_as_a_page_of_the_site(url, expected):
    """The quick refusal of other sites' URLs agrees with the parser on what the parser alters."""
    assert on_site(url, ["https://news.example", "http://127.0.0.1:8080"]) == expected


ORIGINS = ["https://news.example", "http://127.0.0.1:8080", "HTTP://Upper.example", "http://[::1]:8080",
           "https://slash.example/", "http://bücher.example", "http://user@at.example"]


@given(st.lists(st.sampled_from(ORIGINS), min_size=1, max_size=3),
       st.sampled_from(ORIGINS + ["http://", "HTTPS://news.EXAMPLE", " https://news.example", ""]),
       st.text(st.sampled_from("/?#:@[].aA1 \t\n\x00é%"), max_size=12))
@example(["https://news.example"], "https://news.example", "/a?#b")  # an empty query goes
@example(["https://news.example"], "https://news.example", "?")
@settings(max_examples=300)
def test_the_quick_paths_agree_with_the_parser(origins, start, rest):
    """Prefix checks stand in for parsing only where they cannot differ from it."""
    assert on_site(start + rest, origins) == _parsed_on_site(start + rest, origins)
