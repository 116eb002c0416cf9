"""The HTTP API end to end: slot fills, tracking, bad requests, CORS, metrics, hot reload."""

from __future__ import annotations

import asyncio
import json
import copy
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from adserve.events import log_files, read_events
from adserve.server.app import SERVER, create_app

from .conftest import ADMIN, EXAMPLE_REQUEST


async def post_slots(client, body) -> dict:
    response = await client.post("/v1/slots", json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["slots"]


def logged(workdir, kind: str) -> list[dict]:
    return [e for e in read_events(log_files(workdir / "var" / "events")) if e["type"] == kind]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_example_request_fills_every_slot(client, workdir):
    slots = await post_slots(client, EXAMPLE_REQUEST)
    display = slots["s1"]
    assert display["fill"] and display["campaign_id"] == 12174
    assert (display["width"], display["height"]) == (300, 250)
    assert display["variant"] in ("A", "B") and display["image_url"].endswith(".svg")
    assert slots["s2"]["campaign_id"] == 90002 and "html" in slots["s2"]
    assert slots["s3"]["type"] == "recs" and len(slots["s3"]["items"]) == 6
    decision = logged(workdir, "decision")[-1]
    assert decision["user"] == "reader-42" and decision["page"] == "iran-push-us-forces-iraq"
    assert [s["slot"] for s in decision["slots"]] == ["s1", "s2", "s3"]


async def test_variant_is_sticky_for_a_reader(client):
    variants = {(await post_slots(client, EXAMPLE_REQUEST))["s1"]["variant"] for _ in range(5)}
    assert len(variants) == 1


async def test_impression_counts_once_and_click_redirects(client, workdir):
    fill = (await post_slots(client, EXAMPLE_REQUEST))["s1"]
    for _ in range(2):
        pixel = await client.get(local(fill["impression_url"]))
        assert pixel.status == 200 and pixel.content_type == "image/gif"
    impressions = logged(workdir, "impression")
    assert [e["counted"] for e in impressions] == [True, False]
    assert impressions[0]["campaign"] == 12174 and impressions[0]["user"] == "reader-42"
    click = await client.get(local(fill["click_url"]), allow_redirects=False)
    assert click.status == 302
    assert click.headers["Location"] == "https://harborbank.example/winter-savings?utm_source=capitolledger"
    assert logged(workdir, "click")[0]["counted"] is True


async def test_bots_are_logged_but_not_counted(client, workdir):
    fill = (await post_slots(client, EXAMPLE_REQUEST))["s1"]
    await client.get(local(fill["impression_url"]), headers={"User-Agent": "Googlebot/2.1"})
    event = logged(workdir, "impression")[0]
    assert event["bot"] is True and event["counted"] is False


async def test_tampered_and_unsigned_clicks_never_redirect(client, workdir):
    slots = await post_slots(client, EXAMPLE_REQUEST)
    flip = lambda text: text[:-1] + ("A" if text[-1] != "A" else "B")
    attempts = ["/t/c", "/t/c?t=&url=https://evil.example", "/t/c?url=https://evil.example"]
    for click_url in (slots["s1"]["click_url"], slots["s3"]["items"][0]["click_url"]):  # an ad, a widget
        token, _, position = click_url.split("t=")[1].partition("&")
        body, mac = token.split(".")
        suffix = f"&{position}" if position else ""
        attempts += [f"/t/c?t={flip(body)}.{mac}{suffix}", f"/t/c?t={body}.{flip(mac)}{suffix}",
                     f"/t/c?t={body}.{'A' * 22}{suffix}", f"/t/c?t={body}.{suffix}"]
    for path in attempts:
        response = await client.get(path, allow_redirects=False)
        assert 400 <= response.status < 500, path
        assert "Location" not in response.headers
        assert set(await response.json()) == {"error", "detail"}
    assert logged(workdir, "click") == []


async def test_widget_clicks_name_a_position_and_count_once_each(client, workdir):
    widget = (await post_slots(client, EXAMPLE_REQUEST))["s3"]
    organic = [item for item in widget["items"] if not item["sponsored"]]
    token = organic[0]["click_url"].split("t=")[1].split("&")[0]
    for bad in ("", "&i=", "&i=99", "&i=-1", "&i=1x", "&i=%C2%B2", "&i=123", "&i=00", "&i=0%0A",
                "&i=00%0A", "&i=01", "&i=+0", "&i=%200"):  # only the canonical "0" names position 0
        response = await client.get(f"/t/c?t={token}{bad}", allow_redirects=False)
        assert response.status == 400 and "Location" not in response.headers, bad
    for item in (organic[0], organic[1], organic[0]):
        response = await client.get(local(item["click_url"]), allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == item["url"]
    clicks = logged(workdir, "click")
    assert [(c["item"], c["counted"]) for c in clicks] == [
        (organic[0]["item_id"], True), (organic[1]["item_id"], True), (organic[0]["item_id"], False)]
    assert (await client.get(local(widget["impression_url"]))).status == 200
    assert logged(workdir, "impression")[0]["counted"] is True  # the clicks did not use it up


async def test_nothing_is_acknowledged_before_its_event_is_logged(client, workdir, monkeypatch):
    """The log line is written before the answer: when the write fails, no 200, pixel or redirect
    goes out (a hit acknowledged first and logged later is lost by a crash in between)."""
    server = client.server.app[SERVER]
    slots = await post_slots(client, EXAMPLE_REQUEST)
    widget_click = slots["s3"]["items"][0]["click_url"]
    hits = [slots["s1"]["impression_url"], slots["s1"]["click_url"], slots["s3"]["impression_url"],
            widget_click]
    written = server.events.append

    def disk_full(*events):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server.events, "append", disk_full)
    refused = await client.post("/v1/slots", json=EXAMPLE_REQUEST)
    assert refused.status >= 500 and "slots" not in await refused.json()
    for url in hits:
        response = await client.get(local(url), allow_redirects=False)
        assert response.status >= 500, url
        assert "Location" not in response.headers and response.content_type == "application/json"
    monkeypatch.setattr(server.events, "append", written)
    assert logged(workdir, "impression") == logged(workdir, "click") == []
    assert len(logged(workdir, "decision")) == 1


BAD_BODIES = [
    (b"{not json", 400, "malformed JSON"),
    (b"[]", 400, "body"),
    (b'{"slots": []}', 400, "slots"),
    (b'{"slots": [{"id": "a", "type": "video", "sizes": ["300x250"]}]}', 400, "slots[0].type"),
    (b'{"slots": [{"id": "a", "type": "display", "sizes": ["301x250"]}]}', 400, "slots[0].sizes"),
    (b'{"slots": [{"id": "a", "type": "display"}]}', 400, "needs sizes"),
    (b'{"slots": [{"id": "a", "placement": "nowhere"}]}', 400, "unknown placement"),
    (b'{"slots": [{"id": 5, "type": "recs", "count": "six"}]}', 400, "count"),
    (b'{"slots": [{"id": "a\\r\\nSet-Cookie: x", "type": "recs"}]}', 400, "slots[0].id"),
    (b'{"slots": [{"id": "a\\n", "type": "recs"}]}', 400, "slots[0].id"),
    (b'{"page": {"item_id": "a\\n"}, "slots": [{"id": "a", "type": "recs"}]}', 400, "page.item_id"),
    (b'{"user": {"id": ["x"]}, "slots": [{"id": "a", "type": "recs"}]}', 400, "user.id"),
    (b'{"device": "fridge", "slots": [{"id": "a", "type": "recs"}]}', 400, "device"),
    (orjson.dumps({"slots": [{"id": f"s{i}", "type": "recs"} for i in range(21)]}), 400, "at most 20"),
    (orjson.dumps({"slots": [{"id": "a", "type": "recs"}], "pad": "x" * 70000}), 413, ""),
]


async def test_a_body_sent_compressed_or_in_chunks_is_read_whole(client):
    """A body that came with its head is taken as buffered; gzip and chunked ones are read whole."""
    import gzip

    plain = orjson.dumps(EXAMPLE_REQUEST)

    async def chunks():
        for start in range(0, len(plain), 7):
            yield plain[start:start + 7]

    for data, headers in ((gzip.compress(plain), {"Content-Encoding": "gzip"}), (chunks(), {})):
        response = await client.post("/v1/slots", data=data, headers={"Content-Type": "application/json", **headers})
        assert response.status == 200, await response.text()
        assert set((await response.json())["slots"]) == {slot["id"] for slot in EXAMPLE_REQUEST["slots"]}


@pytest.mark.parametrize("body, status, fragment", BAD_BODIES)
async def test_bad_requests_get_a_clear_4xx(client, body, status, fragment):
    response = await client.post("/v1/slots", data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    error = await response.json()
    assert set(error) == {"error", "detail"} and fragment in error["detail"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
slot = st.fixed_dictionaries({}, optional={
    "id": json_values | st.text(max_size=12), "type": st.sampled_from(["display", "recs", "x"]) | json_values,
    "sizes": st.lists(st.sampled_from(["300x250", "728x90", "1x1"]), max_size=3) | json_values,
    "placement": st.sampled_from(["special-offer", "you-might-like", "none"]) | json_values,
    "count": st.integers(-3, 40) | json_values})
bodies = st.fixed_dictionaries({}, optional={
    "page": st.fixed_dictionaries({}, optional={"item_id": json_values, "section": json_values,
                                                "keywords": json_values, "url": json_values}) | json_values,
    "user": st.fixed_dictionaries({}, optional={"id": json_values}) | json_values,
    "device": st.sampled_from(["desktop", "mobile", "tv"]) | json_values,
    "country": st.sampled_from(["US", "us", "USA"]) | json_values,
    "slots": st.lists(slot, max_size=4) | json_values}) | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
async def test_generated_bodies_never_get_a_5xx(client, body):
    response = await client.post("/v1/slots", data=json.dumps(body),
                                 headers={"Content-Type": "application/json"})
    assert response.status in (200, 400), await response.text()
    payload = await response.json()
    assert ("slots" in payload) if response.status == 200 else (set(payload) == {"error", "detail"})


async def test_cors_only_for_configured_origins(client):
    good = await client.post("/v1/slots", json=EXAMPLE_REQUEST, headers={"Origin": "http://localhost:8080"})
    assert good.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    bad = await client.post("/v1/slots", json=EXAMPLE_REQUEST, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers
    preflight = await client.options("/v1/slots", headers={
        "Origin": "http://localhost:8080", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204 and "POST" in preflight.headers["Access-Control-Allow-Methods"]
    refused = await client.options("/v1/slots", headers={"Origin": "https://evil.example"})
    assert refused.status == 403


async def scrape(client) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status == 200 and response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(await response.text()) for sample in family.samples}


async def test_health_openapi_and_metrics_count_known_traffic(client):
    assert await (await client.get("/healthz")).json() == {"status": "ok", "config_ok": True,
                                                           "model_loaded": False, "failing": []}
    spec = await (await client.get("/openapi.json")).json()
    assert {"/v1/slots", "/t/i", "/t/c", "/v1/items/{item_id}"} <= set(spec["paths"])
    before = await scrape(client)
    assert not [name for name, _ in before if name.endswith("_created")]
    assert before[("adserve_slot_request_duration_seconds_count", ())] == 0
    slots = await post_slots(client, EXAMPLE_REQUEST)  # two display ads and a widget, all filled
    for agent in ("Mozilla/5.0", "Mozilla/5.0", "Googlebot/2.1"):  # counted, duplicate, bot
        await client.get(local(slots["s1"]["impression_url"]), headers={"User-Agent": agent})
    await client.get(local(slots["s1"]["click_url"]), allow_redirects=False)
    await client.get("/v1/slots")
    await client.get("/v1/items/x")
    await client.get("/nope")
    after = await scrape(client)
    changed = {key: value - before.get(key, 0) for key, value in after.items()
               if value != before.get(key, 0) and not key[0].endswith(("_bucket", "_sum"))}
    assert changed == {
        ("adserve_requests_total", (("route", "/metrics"), ("status", "200"))): 1,
        ("adserve_requests_total", (("route", "/v1/slots"), ("status", "200"))): 1,
        ("adserve_requests_total", (("route", "/t/i"), ("status", "200"))): 3,
        ("adserve_requests_total", (("route", "/t/c"), ("status", "302"))): 1,
        ("adserve_requests_total", (("route", "/v1/slots"), ("status", "405"))): 1,
        ("adserve_requests_total", (("route", "/v1/items/{item_id}"), ("status", "405"))): 1,
        ("adserve_requests_total", (("route", "none"), ("status", "404"))): 1,
        ("adserve_slots_total", (("filled", "true"), ("type", "display"))): 2,
        ("adserve_slots_total", (("filled", "true"), ("type", "recs"))): 1,
        ("adserve_slot_request_duration_seconds_count", ()): 1,
        ("adserve_events_written_total", (("type", "decision"),)): 1,
        ("adserve_events_written_total", (("type", "impression"),)): 3,
        ("adserve_events_written_total", (("type", "click"),)): 1,
        ("adserve_tracking_total", (("kind", "impression"), ("outcome", "counted"))): 1,
        ("adserve_tracking_total", (("kind", "impression"), ("outcome", "duplicate"))): 1,
        ("adserve_tracking_total", (("kind", "impression"), ("outcome", "bot"))): 1,
        ("adserve_tracking_total", (("kind", "click"), ("outcome", "counted"))): 1,
    }
    assert after[("adserve_slot_request_duration_seconds_bucket", (("le", "+Inf"),))] == 1
    assert after[("adserve_config_reload_errors_total", ())] == 0  # and nothing shed: no change above


def test_slot_latency_histogram_exposes_what_prometheus_client_would():
    """The lock-free histogram's scrape equals prometheus_client's for the same observations,
    values on a bucket's bound included (a bucket counts values <= its bound)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from adserve.server.metrics import LATENCY_BUCKETS, Metrics

    metrics, registry = Metrics(), CollectorRegistry()
    reference = Histogram("adserve_slot_request_duration_seconds",
                          metrics.slot_request_seconds.documentation, buckets=LATENCY_BUCKETS, registry=registry)
    for seconds in (*LATENCY_BUCKETS, 0.0, 0.00049, 0.0051, 0.3, 7.5, LATENCY_BUCKETS[-1] * 2):
        metrics.slot_request_seconds.observe(seconds)
        reference.observe(seconds)
    ours = [family for family in text_string_to_metric_families(metrics.exposition()[0].decode())
            if family.name == "adserve_slot_request_duration_seconds"]
    assert ours == list(text_string_to_metric_families(generate_latest(registry).decode()))


def test_counts_kept_until_the_scrape_expose_what_direct_increments_would():
    """Counts are kept as plain numbers and handed to prometheus_client at each scrape; the scrape
    is byte for byte the one of the same increments made at once, series in the order first
    counted, across scrapes (a series counted again after one starts from what it had)."""
    from adserve.server.metrics import Metrics

    ours, reference = Metrics(), Metrics()
    rounds = [[("requested", "/t/i", 200), ("answered", {"a": {"type": "recs", "items": []},
                                                         "b": {"type": "display", "fill": True}}),
               ("count", ("tracking", "impression", "counted")), ("requested", "/v1/slots", 200),
               ("requested", "/t/i", 200), ("count", ("events", "impression"))],
              [("count", ("events", "click")), ("requested", "/v1/slots", 400), ("requested", "/t/i", 200),
               ("answered", {"b": {"type": "display", "fill": False}, "x": {"type": "video", "items": [1]}})]]
    for calls in rounds:
        for name, *args in calls:
            if name == "requested":
                ours.requested(*args)
                reference.requests.labels(args[0], str(args[1])).inc()
            elif name == "count":
                ours.count(getattr(ours, args[0][0]), *args[0][1:])
                getattr(reference, args[0][0]).labels(*args[0][1:]).inc()
            else:
                ours.answered(args[0], 0.001)
                reference.slot_request_seconds.observe(0.001)
                reference.events.labels("decision").inc()
                for fill in args[0].values():
                    filled = fill.get("fill", True) if fill["type"] == "display" else bool(fill["items"])
                    reference.slots.labels(fill["type"], "true" if filled else "false").inc()
        assert ours.exposition() == reference.exposition()


async def test_cms_upsert_requires_the_token_and_refusals_write_nothing(client, workdir):
    server = client.server.app[SERVER]
    journal = workdir / "var" / "events" / "catalog-updates.jsonl"
    catalog_before = copy.deepcopy(server.catalog.items)
    item = {"url": "https://news.example/a/new", "title": "A new story", "section": "world"}
    token = {"Authorization": "Bearer cms-token-for-tests"}
    refused = [("new-1", item, {}, 401), ("new-1", item, {"Authorization": "Bearer nope"}, 401),
               ("new-1", item, {"Authorization": "cms-token-for-tests"}, 401),
               ("new-2", {"title": "no url"}, token, 400),
               ("new-3", {**item, "url": "javascript:alert(1)"}, token, 400),
               ("bad id!", item, token, 400)]
    for item_id, body, headers, status in refused:
        response = await client.put(f"/v1/items/{item_id}", json=body, headers=headers)
        assert response.status == status, item_id
    assert server.catalog.items == catalog_before and not journal.exists()
    ok = await client.put("/v1/items/new-1", json=item, headers=token)
    assert ok.status == 200 and await ok.json() == {"item_id": "new-1", "live": True}
    added = server.catalog.items["new-1"]
    assert (added.url, added.title, added.section) == (item["url"], item["title"], "world")
    assert set(server.catalog.items) == set(catalog_before) | {"new-1"}
    assert [orjson.loads(line)["item_id"] for line in journal.read_bytes().splitlines()] == ["new-1"]
    retired = await client.put("/v1/items/new-1", json={**item, "live": False}, headers=token)
    assert retired.status == 200 and server.catalog.live("new-1") is None


async def test_a_non_utf8_authorization_header_is_refused_not_a_crash(client):
    body = orjson.dumps({"url": "https://news.example/a/new", "title": "A new story"})
    for raw in (b"Bearer \xff\xfe", b"\xc3\x28", b"Bearer cms-token-for-tests\xff"):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"PUT /v1/items/new-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + raw
                     + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"401", raw


@pytest.mark.parametrize("published", [1e308, -1e308, 1e20])
async def test_a_publish_time_no_page_can_show_is_refused(client, published):
    item = {"url": "/articles/far-future", "title": "From the far future", "published": published}
    response = await client.put("/v1/items/far-future", json=item,
                                headers={"Authorization": "Bearer cms-token-for-tests"})
    assert response.status == 400 and "published" in (await response.json())["detail"]
    assert (await client.get("/articles/far-future")).status == 404


async def test_page_context_json_cannot_end_or_open_a_script_block(client):
    title = 'Quote <!--<script> & </script><b>"x"</b> \u2028'
    item = {"url": "/articles/tricky", "title": title, "section": "world"}
    assert (await client.put("/v1/items/tricky", json=item,
                             headers={"Authorization": "Bearer cms-token-for-tests"})).status == 200
    page = await (await client.get("/articles/tricky")).text()
    opening = '<script type="application/json" id="adserve-page">'
    start = page.index(opening) + len(opening)
    block = page[start:page.index("</script>", start)]
    assert not set("<>&") & set(block)
    assert orjson.loads(block)["title"] == title
    assert '<script src="/static/adserve.' in page[start + len(block):]  # the loader's tag, intact


def edit(workdir, name: str, old: str, new: str) -> None:
    path = workdir / "config" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_bad_edit_keeps_last_good_config_and_is_reported(client, workdir):
    server = client.server.app[SERVER]
    edit(workdir, "campaigns/display.yaml", "    tier: standard\n    weight: 3",
         "    tier: standard\n    wieght: 3")
    await server.reload_config()
    status = await (await client.get("/v1/config/status", headers=ADMIN)).json()
    assert status["config"]["ok"] is False and status["config"]["applied"] is False
    error = status["config"]["errors"][0]
    assert error["file"].endswith("display.yaml") and error["line"] == 9
    assert "did you mean 'weight'" in error["message"]
    assert (await post_slots(client, EXAMPLE_REQUEST))["s1"]["campaign_id"] == 12174
    metrics = await (await client.get("/metrics")).text()
    assert "adserve_config_reload_errors_total 1.0" in metrics
    edit(workdir, "campaigns/display.yaml", "wieght: 3", "weight: 3\n    status: paused")
    await server.reload_config()
    assert (await (await client.get("/v1/config/status")).json())["config"]["ok"] is True
    assert (await post_slots(client, EXAMPLE_REQUEST))["s1"]["campaign_id"] == 90001


async def test_watcher_notices_an_edit(client, workdir):
    server = client.server.app[SERVER]
    serving = server.runtime
    edit(workdir, "campaigns/display.yaml", "  - id: 12174\n", "  - id: 12174\n    status: paused\n")
    for _ in range(1200):  # polled every second by the watcher (a hang guard, not a time limit)
        if server.runtime is not serving:
            break
        await asyncio.sleep(0.05)
    assert (await post_slots(client, EXAMPLE_REQUEST))["s1"]["campaign_id"] == 90001


async def test_frequency_counters_survive_a_reload(client, workdir):
    server = client.server.app[SERVER]
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    for _ in range(5):  # 12174 is capped at 5 a day
        fill = (await post_slots(client, body))["s1"]
        assert fill["campaign_id"] == 12174
        await client.get(local(fill["impression_url"]))
    edit(workdir, "site.yaml", "name: The Capitol Ledger", "name: The Capitol Ledger (edited)")
    await server.reload_config()
    assert server.runtime.config.site.name.endswith("(edited)")
    assert (await post_slots(client, body))["s1"]["campaign_id"] == 90001


async def test_a_reload_moves_the_body_limit_for_bodies_sent_in_pieces(client, workdir):
    """aiohttp's own body limit is set once, at start-up; the configured one follows reloads, up
    and down, for bodies that come with their head and for chunked ones alike."""
    server = client.server.app[SERVER]

    async def post(size: int) -> int:
        body = orjson.dumps({"slots": [{"id": "a", "type": "recs"}], "pad": "x" * size})

        async def chunks():
            for start in range(0, len(body), 16384):
                yield body[start:start + 16384]
                await asyncio.sleep(0.01)  # the handler reads while the body is on its way

        codes = []
        for data in (body, chunks()):
            response = await client.post("/v1/slots", data=data, headers={"Content-Type": "application/json"})
            codes.append(response.status)
        return codes

    assert await post(70_000) == [413, 413]
    edit(workdir, "site.yaml", "max_body_bytes: 65536", "max_body_bytes: 131072")
    await server.reload_config()
    assert await post(70_000) == [200, 200]
    assert await post(140_000) == [413, 413]
    edit(workdir, "site.yaml", "max_body_bytes: 131072", "max_body_bytes: 32768")
    await server.reload_config()
    assert await post(40_000) == [413, 413]


async def test_an_edited_creative_shows_as_edited_after_a_reload(client, workdir):
    """Display answers and native items reuse each creative's parts: a reload must show its edits."""
    server = client.server.app[SERVER]
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [EXAMPLE_REQUEST["slots"][0], {"id": "w", "placement": "you-might-like"}]
    before = await post_slots(client, body)
    assert before["s1"]["campaign_id"] == 12174
    assert [i["advertiser"] for i in before["w"]["items"] if i["sponsored"]]
    edit(workdir, "campaigns/display.yaml", "creatives/harbor-300x250-a.svg", "creatives/harbor-300x250-edited.svg")
    edit(workdir, "campaigns/display.yaml", "creatives/harbor-300x250-b.svg", "creatives/harbor-300x250-edited.svg")
    text = (workdir / "config" / "campaigns" / "native.yaml").read_text()
    (workdir / "config" / "campaigns" / "native.yaml").write_text(
        text.replace("advertiser: Brightnest", "advertiser: Brightnest Homes")
            .replace("advertiser: Coastline Rail", "advertiser: Coastline Railways"))
    await server.reload_config()
    after = await post_slots(client, body)
    assert after["s1"]["campaign_id"] == 12174 and after["s1"]["image_url"].endswith("harbor-300x250-edited.svg")
    edited = [i["advertiser"] for i in after["w"]["items"] if i["sponsored"]]
    assert edited and all(name in ("Brightnest Homes", "Coastline Railways") for name in edited)


async def test_counters_and_dedup_are_rebuilt_from_the_log_after_a_restart(aiohttp_client, make_server):
    first = await aiohttp_client(create_app(make_server()))
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    urls = []
    for _ in range(5):  # 12174 is capped at 5 a day per reader
        fill = (await post_slots(first, body))["s1"]
        urls.append(fill["impression_url"])
        await first.get(local(fill["impression_url"]))
    await first.close()  # the process is gone; only the event log remains
    second = await aiohttp_client(create_app(make_server()))
    assert (await post_slots(second, body))["s1"]["campaign_id"] == 90001
    await second.get(local(urls[0]))  # a replayed token still counts once
    assert logged_counted(second) == 5


def logged_counted(client) -> int:
    server = client.server.app[SERVER]
    return sum(1 for e in read_events(log_files(server.events.folder))
               if e["type"] == "impression" and e["counted"])


async def test_a_request_for_the_whole_server_goes_through_the_front_door_too(client):
    """``OPTIONS *`` (the asterisk form, no path) is answered like any other path: a preflight for
    an allowed origin, a JSON 404 counted under "none" otherwise; never aiohttp's plain text."""
    async def ask(origin: bytes) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + origin + b"\r\n")
        answer = await reader.read()
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return head, body

    head, _ = await ask(b"Origin: http://localhost:8080\r\nAccess-Control-Request-Method: POST\r\n")
    assert head.startswith(b"HTTP/1.1 204") and b"Access-Control-Allow-Origin: http://localhost:8080" in head
    before = await scrape(client)
    head, body = await ask(b"")
    assert head.startswith(b"HTTP/1.1 404") and orjson.loads(body)["error"] == "not_found"
    counted = ("adserve_requests_total", (("route", "none"), ("status", "404")))
    assert (await scrape(client))[counted] == before.get(counted, 0) + 1
