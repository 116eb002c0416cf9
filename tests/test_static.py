"""The loader and static files: caching headers, versioned URL, gzip, and nothing outside the folder."""

from __future__ import annotations

import re

import orjson
import pytest

from adserve.render import BASE_CSS
from adserve.server.app import SERVER
from adserve.server.static import accepts_gzip

from .test_server import edit

PLAIN = {"Accept-Encoding": "identity"}


async def loader_path(client) -> str:
    page = await (await client.get("/")).text()
    return re.search(r'<script src="(/static/adserve\.[0-9a-f]{16}\.js)" async>', page)[1]


async def test_loader_is_cached_briefly_and_revalidated_with_its_etag(client):
    response = await client.get("/static/adserve.js", headers=PLAIN)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Content-Type"].startswith("application/javascript")
    etag = response.headers["ETag"]
    again = await client.get("/static/adserve.js", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "public, max-age=300"
    other = await client.get("/static/adserve.js", headers={"If-None-Match": 'W/"0123456789abcdef"'})
    assert other.status == 200


async def test_versioned_loader_is_immutable_and_carries_the_placements(client):
    path = await loader_path(client)
    versioned = await client.get(path)
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    body = await versioned.text()
    assert body == await (await client.get("/static/adserve.js")).text()
    assert path.split(".")[1] in versioned.headers["ETag"]
    assert '"top-banner":{"type":"display","sizes":["970x250","728x90","320x50"]' in body
    assert '"collapse":"never"' in body and "allowed_origins" not in body  # placements only
    assert f"var BASE_CSS = {orjson.dumps(BASE_CSS).decode()};" in body  # the pages' tile CSS
    # a page naming an older version still gets a loader, but may not keep it
    stale = await client.get("/static/adserve.0123456789abcdef.js")
    assert stale.status == 200 and stale.headers["Cache-Control"] == "public, max-age=300"


async def test_a_config_change_renames_the_loader(client, workdir):
    before = await loader_path(client)
    edit(workdir, "site.yaml", "  - id: take-a-look\n    type: recs\n    count: 4\n",
         "  - id: take-a-look\n    type: recs\n    count: 5\n")
    await client.server.app[SERVER].reload_config()
    after = await loader_path(client)
    assert after != before
    assert '"take-a-look":{"type":"recs","sizes":[],"count":5' in await (await client.get(after)).text()
    page = await (await client.get("/")).text()  # the page's own reservation follows as well
    widget = re.search(r'<div data-adserve-slot="take-a-look".*?</ul>', page, re.DOTALL)[0]
    assert widget.count("adserve-rec--skeleton") == 5


async def test_cors_keeps_the_encoding_in_vary(client):
    response = await client.get("/static/adserve.js", headers={"Origin": "http://localhost:8080"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    assert response.headers["Vary"] == "Accept-Encoding, Origin"


@pytest.mark.parametrize("path", ["/static/adserve.js", "/static/creatives/harbor-300x250-a.svg"])
async def test_text_files_are_gzipped_for_clients_that_accept_it(client, path):
    plain = await client.get(path, headers=PLAIN)
    assert "Content-Encoding" not in plain.headers
    packed = await client.get(path, headers={"Accept-Encoding": "br, gzip"}, auto_decompress=False)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == plain.headers["Vary"] == "Accept-Encoding"
    assert packed.headers["ETag"] == plain.headers["ETag"]
    raw = await packed.read()
    assert len(raw) < len(await plain.read())
    refused = await client.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers


async def test_assets_have_a_type_a_lifetime_and_no_sniffing(client):
    response = await client.get("/static/creatives/harbor-300x250-a.svg")
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    head = await client.head("/static/thumbs/world.svg")
    assert head.status == 200 and head.headers["ETag"]


@pytest.mark.parametrize("path", ["/static/../config/site.yaml", "/static/%2e%2e/server/app.py",
                                  "/static/creatives/../../server/app.py", "/static/creatives/",
                                  "/static/creatives", "/static/nope.js", "/static/adserve.XYZ.js",
                                  "/static/..%2fserver%2fapp.py"])
async def test_nothing_outside_the_static_files_is_served(client, path):
    response = await client.get(path)
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("header, expected", [
    ("gzip", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("*", True), ("x-gzip", True),
    ("", False), ("identity", False), ("gzip;q=0", False), ("gzip;q=0.0, *", False),
    ("*;q=0", False), ("gzip;q=abc", False), ("br", False)])
def test_accept_encoding(header, expected):
    assert accepts_gzip(header) is expected
