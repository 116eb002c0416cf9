"""A widget and its native ads share one signed token: each native's hits still stand alone.

Signing is a page's largest share of tracking work, so a widget's token carries its natives
(campaign, creative, variant, reader, landing URL, reservation) and each native's pixel and click
name its index (``a``). Each native's pixel confirms its own reservation and counts once, its click
goes only to its own signed landing URL, and tokens signed before this format keep working.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from adserve.server.app import SERVER

from .test_server import local, logged, post_slots

PAGE = {"page": {"item_id": "iran-push-us-forces-iraq", "section": "politics"},
        "user": {"id": "reader-7"}, "device": "desktop",
        "slots": [{"id": "side", "placement": "special-offer"}, {"id": "w", "placement": "you-might-like"}]}


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def natives(widget: dict) -> list[dict]:
    return [item for item in widget["items"] if item["sponsored"]]


async def test_a_widget_and_its_natives_share_one_token(client):
    slots = await post_slots(client, PAGE)
    widget = slots["w"]
    urls = [widget["impression_url"]] + [item["click_url"] for item in widget["items"]] \
        + [item["impression_url"] for item in natives(widget)]
    assert len(natives(widget)) == 2
    assert {query(url)["t"] for url in urls} == {query(widget["impression_url"])["t"]}
    assert [(query(n["impression_url"])["a"], query(n["click_url"])["a"]) for n in natives(widget)] == \
        [("0", "0"), ("1", "1")]
    assert query(slots["side"]["impression_url"])["t"] != query(widget["impression_url"])["t"]


async def test_each_native_pixel_confirms_its_own_reservation_and_counts_once(client, workdir):
    server = client.server.app[SERVER]
    widget = (await post_slots(client, PAGE))["w"]
    first, second = natives(widget)
    ads = server.signer.verify(query(widget["impression_url"])["t"])["ads"]
    held = {ad["r"] for ad in ads if "r" in ad}
    assert held and held <= set(server.state._reserved)
    for url in (first["impression_url"], first["impression_url"], second["impression_url"],
                widget["impression_url"]):
        assert (await client.get(local(url))).status == 200
    hits = logged(workdir, "impression")
    assert [(e["campaign"], e["counted"], e["sponsored"], e["items"] is None) for e in hits] == [
        (first["campaign_id"], True, True, True), (first["campaign_id"], False, True, True),
        (second["campaign_id"], True, True, True), (None, True, False, False)]
    assert [e["user"] for e in hits] == ["reader-7"] * 4
    assert [e["creative"] for e in hits[:3]] == [f"{c}-native" for c in
                                                  (first["campaign_id"], first["campaign_id"], second["campaign_id"])]
    assert len({e["token"] for e in hits}) == 3  # the repeat shares its native's id, nothing else does
    assert [e["billable"] for e in hits[:3]] == [True, False, True]
    assert not held & set(server.state._reserved)  # each native's pixel confirmed its own


async def test_a_native_click_goes_to_its_own_landing_url_once(client, workdir):
    widget = (await post_slots(client, PAGE))["w"]
    first, second = natives(widget)
    article = next(item for item in widget["items"] if not item["sponsored"])  # position 0, like first
    for item in (first, second, first, article):
        response = await client.get(local(item["click_url"]), allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == item["url"]
    clicks = logged(workdir, "click")
    assert [(c["campaign"], c["url"], c["counted"]) for c in clicks] == [
        (first["campaign_id"], first["url"], True), (second["campaign_id"], second["url"], True),
        (first["campaign_id"], first["url"], False), (None, article["url"], True)]


async def test_a_native_index_is_canonical_and_inside_its_widget(client, workdir):
    slots = await post_slots(client, PAGE)
    widget_token = query(slots["w"]["impression_url"])["t"]
    display_token = query(slots["side"]["impression_url"])["t"]
    bad = [f"/t/{kind}?t={widget_token}{suffix}" for kind in ("i", "c")
           for suffix in ("&a=", "&a=2", "&a=-1", "&a=01", "&a=00", "&a=0%0A", "&a=%200", "&a=x")]
    bad += [f"/t/c?t={widget_token}&a=0&i=0", f"/t/c?t={widget_token}&i=0&a=1",
            f"/t/i?t={display_token}&a=0", f"/t/c?t={display_token}&a=0"]
    for path in bad:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 400 and "Location" not in response.headers, path
    assert logged(workdir, "impression") == logged(workdir, "click") == []


async def test_native_tokens_signed_before_the_shared_format_still_count(client, workdir):
    """Tokens live for ``token_ttl_seconds``: a native's own token from before a deploy still works."""
    server = client.server.app[SERVER]
    token = server.signer.sign({"c": 12300, "cr": "12300-native", "v": "A", "s": "w", "u": "reader-7",
                                "p": "iran-push-us-forces-iraq", "l": "https://brightnest.example/deals",
                                "pl": "you-might-like", "st": "personal"})
    assert (await client.get(f"/t/i?t={token}")).status == 200
    response = await client.get(f"/t/c?t={token}", allow_redirects=False)
    assert response.headers["Location"] == "https://brightnest.example/deals"
    assert [(e["type"], e["campaign"], e["counted"], e["sponsored"])
            for e in logged(workdir, "impression") + logged(workdir, "click")] == [
        ("impression", 12300, True, True), ("click", 12300, True, True)]
