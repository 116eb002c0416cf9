"""A page's answer: what serving keeps per layout, ad and host never shows the wrong page's parts."""

from __future__ import annotations

import copy
from urllib.parse import parse_qs, urlsplit

import pytest

from adserve.serving import Runtime
from adserve.server.app import SERVER

from .conftest import EXAMPLE_REQUEST
from .test_server import edit, logged, post_slots

DISPLAY = {"id": "s1", "type": "display", "sizes": ["300x250"]}
WIDGET = {"id": "w", "placement": "you-might-like"}


def payload(client, url: str) -> dict:
    """A tracking URL's token as the server reads it, without its issue time and nonce."""
    token = parse_qs(urlsplit(url).query)["t"][0]
    return {k: v for k, v in client.server.app[SERVER].signer.verify(token).items() if k not in ("t", "n")}


def sponsored_positions(answer: dict) -> list[int]:
    return [n for n, item in enumerate(answer["items"], 1) if item.get("sponsored")]


async def test_a_reload_moves_a_widgets_sponsored_positions(client, workdir):
    """A layout's needs are kept per config: a reload that moves the sold positions moves the ads."""
    body = {**copy.deepcopy(EXAMPLE_REQUEST), "slots": [WIDGET]}
    assert sponsored_positions((await post_slots(client, body))["w"]) == [2, 5]
    edit(workdir, "site.yaml", "sponsored_positions: [2, 5]", "sponsored_positions: [1, 4]")
    await client.server.app[SERVER].reload_config()
    assert sponsored_positions((await post_slots(client, body))["w"]) == [1, 4]


async def test_each_host_gets_urls_of_its_own(client):
    """The display answer kept per ad is kept per base URL too: no host sees another's URLs."""
    body = {**copy.deepcopy(EXAMPLE_REQUEST), "slots": [DISPLAY]}
    for host in ("a.example", "b.example", "a.example"):
        response = await client.post("/v1/slots", json=body, headers={"Host": host})
        ad = (await response.json())["slots"]["s1"]
        assert ad["campaign_id"] == 12174
        assert ad["image_url"].startswith(f"http://{host}/static/creatives/harbor-300x250-")
        assert ad["impression_url"].startswith(f"http://{host}/t/i?t=")
        assert ad["click_url"].startswith(f"http://{host}/t/c?t=")


@pytest.mark.parametrize("privacy, label", [(None, None), ({"gdpr_applies": False}, "reader+ads+content")])
async def test_one_ad_in_two_slots_and_pages_carries_each_ones_fields(client, workdir, privacy, label):
    """What is kept of an ad per slot never leaks one page's reader, page or reservation into another's."""
    answers = []
    for n, slot in enumerate([DISPLAY, {"id": "s2", "placement": "sidebar-300x250"}, DISPLAY]):
        body = {**copy.deepcopy(EXAMPLE_REQUEST), "slots": [slot], "user": {"id": f"reader-{n}"},
                "page": {**EXAMPLE_REQUEST["page"], "item_id": f"page-{n}"}}
        if privacy is not None:
            body["privacy"] = privacy
        answers.append((slot, n, (await post_slots(client, body))[slot["id"]]))
    reservations = set()
    for slot, n, ad in answers:
        assert ad["campaign_id"] == 12174 and ad["impression_url"].split("t=")[1] == ad["click_url"].split("t=")[1]
        signed = payload(client, ad["impression_url"])
        reservations.add(signed.pop("r"))
        expected = {"c": 12174, "cr": ad["creative_id"], "v": ad["variant"], "u": f"reader-{n}",
                    "l": "https://harborbank.example/winter-savings?utm_source=capitolledger",
                    "s": slot["id"], "p": f"page-{n}"}
        if "placement" in slot:
            expected["pl"] = slot["placement"]
        if label is not None:
            expected["k"] = label
        assert signed == expected
    assert len(reservations) == 3
    records = [e["slots"] for e in logged(workdir, "decision")]
    assert records == [[{"slot": slot["id"], "placement": slot.get("placement"), "campaign": 12174,
                         "creative": ad["creative_id"], "variant": ad["variant"]}] for slot, _, ad in answers]
    assert [e["consent"] for e in logged(workdir, "decision")] == [label] * 3


async def test_what_serving_keeps_is_bounded(client, monkeypatch):
    """Host names and layouts made up per request start the kept answers over, never grow them."""
    monkeypatch.setattr("adserve.serving.MAX_SHARED", 3)
    runtime = client.server.app[SERVER].runtime
    monkeypatch.setattr(runtime, "most_shown", 3)
    for n in range(8):
        body = {**copy.deepcopy(EXAMPLE_REQUEST), "slots": [{**DISPLAY, "id": f"s{n}"}]}
        response = await client.post("/v1/slots", json=body, headers={"Host": f"h{n}.example"})
        assert (await response.json())["slots"][f"s{n}"]["image_url"].startswith(f"http://h{n}.example/")
        assert len(runtime.shown) <= 3 and len(runtime.layouts) <= 3


def test_a_variant_object_shared_by_two_creatives_shows_each_ones_fields():
    """An ad is kept under its slot's and variant's ids; its creative and campaign are checked too."""
    from types import SimpleNamespace

    from adserve.decision import Fill
    from adserve.request import Slot
    from adserve.tokens import Signer

    signer = Signer(b"s" * 32, 60)
    runtime = Runtime(config=SimpleNamespace(campaigns=[]), decider=None)
    slot = Slot("s1", "display", None, ("300x250",))
    variant = SimpleNamespace(id="A", image_url="/a.svg", html=None)
    creatives = [SimpleNamespace(id=f"cr-{n}", size="300x250", format="image", landing_url=f"https://{n}.example/")
                 for n in (1, 2)]
    campaigns = [SimpleNamespace(id=1), SimpleNamespace(id=2)]
    for creative, campaign in [(0, 0), (0, 1), (1, 1), (1, 0), (0, 0)]:  # one of the two changes each time
        creative, campaign = creatives[creative], campaigns[campaign]
        shown = runtime.shown_ad(slot, Fill(campaign, creative, variant), "http://h", signer)
        assert (shown.answer["campaign_id"], shown.answer["creative_id"]) == (campaign.id, creative.id)
        token = signer.verify(signer.sign({"u": None}, shown.token))
        assert (token["c"], token["cr"], token["l"]) == (campaign.id, creative.id, creative.landing_url)


def test_a_big_books_ads_stay_kept_while_they_rotate(monkeypatch):
    """The kept answers hold every ad of the book in each of a few slots: a big book's ads rotate
    through more of them than the floor (``MAX_KEPT``), and starting over each time the floor
    filled built 0.1-0.3 ads again a page at 10,000 campaigns (#18)."""
    from types import SimpleNamespace

    from adserve.decision import Fill
    from adserve.request import Slot
    from adserve.tokens import Signer

    monkeypatch.setattr(Runtime, "MAX_KEPT", 3)
    signer = Signer(b"s" * 32, 60)
    campaigns = [SimpleNamespace(id=n, creatives=[SimpleNamespace(
        id=f"cr-{n}", size="300x250", format="image", landing_url=f"https://{n}.example/",
        variants=[SimpleNamespace(id=v, image_url="/a.svg", html=None) for v in "AB"])]) for n in range(10)]
    runtime = Runtime(config=SimpleNamespace(campaigns=campaigns), decider=None)
    ads = [(Slot(s, "display", None, ("300x250",)), Fill(c, c.creatives[0], v))
           for s in ("side", "top") for c in campaigns for v in c.creatives[0].variants]
    first = [runtime.shown_ad(slot, fill, "http://h", signer) for slot, fill in ads]
    again = [runtime.shown_ad(slot, fill, "http://h", signer) for slot, fill in ads]
    assert all(a is b for a, b in zip(first, again)) and len(runtime.shown) == 40


def test_a_native_is_kept_per_widget_strategy_apart_from_the_display_ad():
    """A native's kept answer and token head are its widget strategy's: one variant shown as a
    display ad and as natives of two strategies in one slot gives three entries."""
    from types import SimpleNamespace

    from adserve.decision import Fill
    from adserve.request import Slot
    from adserve.tokens import Signer

    signer = Signer(b"s" * 32, 60)
    runtime = Runtime(config=SimpleNamespace(campaigns=[]), decider=None)
    slot = Slot("w1", "recs", "widget", ("native",))
    variant = SimpleNamespace(id="A", image_url="/a.svg", html=None, title="Sponsored A")
    creative = SimpleNamespace(id="cr-1", size="300x250", format="image", landing_url="https://a.example/")
    fill = Fill(SimpleNamespace(id=7, advertiser="Acme"), creative, variant)
    display = runtime.shown_ad(slot, fill, "http://h", signer)
    assert display.answer["type"] == "display" and display.record["campaign"] == 7
    for strategy in ("personal", "trending", "personal"):
        native = runtime.shown_ad(slot, fill, "http://h", signer, strategy)
        assert native.record is None and native.answer["sponsored"] is True
        assert native.answer["image_url"] == "http://h/a.svg" and native.answer["advertiser"] == "Acme"
        token = signer.verify(signer.sign({"u": None}, native.token))
        assert (token["st"], token["s"], token["pl"], token["l"]) == (strategy, "w1", "widget", "https://a.example/")
    assert len(runtime.shown) == 3


async def test_serving_keeps_no_more_of_made_up_layouts_than_the_parser_does(client):
    """Each layout a request makes up is parsed anew, and the parser keeps only a bounded table
    of them; what serving keeps per layout and per ad must not hold on to more of them (its
    own table would hold thousands of layouts of ``max_slots`` slots each)."""
    import gc
    import tracemalloc

    from adserve import request as parser

    server = client.server.app[SERVER]
    runtime = server.runtime
    config = runtime.config
    slots = config.server.max_slots

    async def serve(n: int) -> None:
        body = {**copy.deepcopy(EXAMPLE_REQUEST),
                "slots": [{**DISPLAY, "id": f"{n}-{k}-" + "x" * 100} for k in range(slots)]}
        request = parser.parse_slot_request(body, config.placements, slots)
        assert (await server.slots.serve(runtime, request, "http://h"))[f"{n}-0-" + "x" * 100]["fill"]

    tracemalloc.start()
    try:
        for n in range(parser._Layouts.MAX_LAYOUTS):  # the parser's table full: it holds as much at the end
            await serve(n)
        gc.collect()
        before = tracemalloc.take_snapshot()
        for n in range(5 * parser._Layouts.MAX_LAYOUTS):
            await serve(1000 + n)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename")
               if stat.traceback[0].filename == parser.__file__)
    assert kept < 8 * slots * 100  # 8 layouts' parsed slots, at 100 bytes each: slack, not one per request


async def test_a_host_header_no_server_can_have_is_refused(client):
    """Without ``public_url`` (the demo) the answer's URLs start with the Host header, and what
    serving and the catalog keep per ad and article is kept per base URL: a made-up host of
    kilobytes, or one that is no host at all, gets a 400 instead of being kept and echoed."""
    body = {**copy.deepcopy(EXAMPLE_REQUEST), "slots": [DISPLAY]}
    for host in ("a" * 300 + ".example", 'x"><b>.example', "news.example/a", "news.example:8x", "a b"):
        response = await client.post("/v1/slots", json=body, headers={"Host": host})
        assert response.status == 400 and "Host" in (await response.json())["detail"], host
    assert not client.server.app[SERVER].runtime.shown
    for host in ("news.example:8080", "127.0.0.1", "[::1]:8080", "ads_demo"):
        response = await client.post("/v1/slots", json=body, headers={"Host": host})
        assert (await response.json())["slots"]["s1"]["image_url"].startswith(f"http://{host}/"), host
