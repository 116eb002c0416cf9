"""Server-side rendering: the loader's markup from a slot answer, escaped and sandboxed."""

from __future__ import annotations

import copy
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adserve.model import Placement
from adserve.render import BASE_CSS, SANDBOX, render_slot, reserve_slots

from .conftest import EXAMPLE_REQUEST


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag):
        return [attrs for t, attrs in self.tags if t == tag]


async def answer(client, body) -> dict:
    return (await (await client.post("/v1/slots", json=body)).json())["slots"]


async def test_display_renders_in_a_sandboxed_frame(client):
    slots = await answer(client, EXAMPLE_REQUEST)
    html = render_slot("s2", slots["s2"])
    tags = Tags(html)
    (frame,) = tags.find("iframe")
    assert frame["sandbox"] == SANDBOX and "allow-same-origin" not in frame["sandbox"]
    assert (frame["width"], frame["height"]) == ("300", "250")
    inner = Tags(frame["srcdoc"])  # the parser unescapes the attribute back to the document
    assert inner.find("a")[0]["href"] == slots["s2"]["click_url"]
    assert tags.find("div")[0]["data-adserve-impressions"] == slots["s2"]["impression_url"]


async def test_recs_escape_titles_and_label_sponsored(client):
    item = {"url": "https://news.example/x", "title": "<script>alert(1)</script> & more",
            "section": "politics", "published": time.time() + 60}  # the newest article
    assert (await client.put("/v1/items/evil-title", json=item,
                             headers={"Authorization": "Bearer cms-token-for-tests"})).status == 200
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "w", "placement": "you-might-like"}]
    slots = await answer(client, body)
    html = render_slot("w", slots["w"], title="You Might Like")
    assert "<script>" not in html
    tags = Tags(html)
    assert len(tags.find("li")) == 6
    assert "<script>alert(1)</script> & more" in tags.text
    assert tags.text.count("Sponsored · Brightnest") + tags.text.count("Sponsored · Coastline Rail") == 2
    assert len(tags.find("div")[0]["data-adserve-impressions"].split()) == 3  # widget + 2 sponsored


def test_unfilled_slot_without_placement_renders_hidden():
    assert Tags(render_slot("s9", {"type": "display", "fill": False})).find("div")[0]["hidden"] is None


BANNER = Placement(id="top-banner", type="display", sizes=["970x250", "728x90"])
LEADERBOARD = {"type": "display", "fill": True, "campaign_id": 7, "width": 728, "height": 90,
               "image_url": "https://ads.example/a.png", "click_url": "https://ads.example/c",
               "impression_url": "https://ads.example/i"}


def test_display_keeps_the_box_of_the_largest_size_the_slot_asked_for():
    tags = Tags(render_slot("top", LEADERBOARD, placement=BANNER))
    assert tags.find("div")[0]["style"] == "min-width:970px;min-height:250px"  # as the loader reserves
    (frame,) = tags.find("iframe")
    assert (frame["width"], frame["height"]) == ("728", "90")
    assert Tags(render_slot("top", LEADERBOARD)).find("div")[0]["style"] == "min-width:728px;min-height:90px"


@pytest.mark.parametrize("collapse", ["never", "on_empty", "before_fetch"])
def test_unfilled_display_follows_the_collapse_setting(collapse):
    placement = Placement(id="top-banner", type="display", sizes=["970x250", "728x90"], collapse=collapse)
    (div,) = Tags(render_slot("top", {"type": "display", "fill": False}, placement=placement)).find("div")
    assert div["data-adserve-state"] == "empty"
    if collapse == "never":  # blank, but the page around it lays out as if it were filled
        assert div["style"] == "min-width:970px;min-height:250px;visibility:hidden" and "hidden" not in div
    else:
        assert "hidden" in div and "style" not in div


def test_unfilled_widget_that_never_collapses_keeps_its_tiles_blank():
    placement = Placement(id="take-a-look", type="recs", count=4)
    html = render_slot("w", {"type": "recs", "items": []}, title="Take a Look!", placement=placement)
    tags = Tags(html)
    assert tags.find("div")[0]["style"] == "visibility:hidden"
    assert [li["class"] for li in tags.find("li")] == ["adserve-rec adserve-rec--skeleton"] * 4
    assert tags.text == ["Take a Look!"]


def test_tiles_have_one_build_with_or_without_a_thumbnail():
    fill = {"type": "recs", "strategy": "popular", "items": [
        {"title": "With", "image_url": "https://news.example/t.png", "click_url": "https://x/c?i=1"},
        {"title": "Without", "click_url": "https://x/c?i=2"}]}
    tags = Tags(render_slot("w", fill))
    thumbs = [(tag, attrs["class"]) for tag, attrs in tags.tags if "adserve-rec-img" in attrs.get("class", "")]
    assert thumbs == [("img", "adserve-rec-img"), ("span", "adserve-rec-img")]


def test_loader_and_readme_use_the_same_sandbox():
    """One set of sandbox flags: the loader's frame is render.py's, and the README names each."""
    repo = Path(__file__).resolve().parent.parent
    loader = (repo / "adserve" / "static" / "adserve.js").read_text()
    assert f'frame.setAttribute("sandbox", "{SANDBOX}")' in loader
    readme = (repo / "README.md").read_text()
    for flag in SANDBOX.split():
        assert f"`{flag}`" in readme, flag


PLACEMENTS = {"top-banner": Placement(id="top-banner", type="display", sizes=["970x250", "728x90", "320x50"]),
              "widget": Placement(id="widget", type="recs", count=4),
              "late": Placement(id="late", type="display", sizes=["300x250"], collapse="before_fetch")}


def test_page_reserves_display_slots_by_the_sizes_the_viewport_fits():
    page = reserve_slots('<html><head><title>t</title></head><body>'
                         '<div class="ad" data-adserve-slot="top-banner" id="b"></div></body></html>', PLACEMENTS)
    (div,) = Tags(page).find("div")
    assert div["class"] == "ad adserve-display adserve-box-970x250-728x90-320x50"
    assert div["id"] == "b" and div["aria-busy"] == "true"
    style = Tags(page).text[1]
    assert page.index("<style>") < page.index("</head>")
    assert style == (BASE_CSS + ".adserve-box-970x250-728x90-320x50{min-width:320px;min-height:50px}"
                     "@media (min-width:728px){.adserve-box-970x250-728x90-320x50{min-width:728px;min-height:90px}}"
                     "@media (min-width:970px){.adserve-box-970x250-728x90-320x50{min-width:970px;min-height:250px}}")


def test_slot_markup_overrides_its_placement_as_the_loader_reads_it():
    page = reserve_slots('<div data-adserve-slot="top-banner" data-adserve-sizes="300x250, native"></div>'
                         '<div data-adserve-slot="" data-adserve-type="display" data-adserve-sizes="160x600 300x600">'
                         '</div><div data-adserve-slot="top-banner" data-adserve-collapse="before_fetch"></div>'
                         '<div data-adserve-slot="late"></div><div data-adserve-slot="unknown"></div>', PLACEMENTS)
    divs = Tags(page).find("div")
    assert [d.get("class") for d in divs] == ["adserve-display adserve-box-300x250",
                                              "adserve-display adserve-box-160x600-300x600", None, None, None]
    assert "min-width:160px;min-height:600px}@media (min-width:300px){.adserve-box-160x600-300x600" \
           "{min-width:300px;min-height:600px}" in page
    assert page.startswith("<style>")  # no </head>: the rules go first


@pytest.mark.parametrize("count, tiles", [("", 4), (' data-adserve-count="2"', 2), (' data-adserve-count="99"', 24)])
def test_page_reserves_widgets_with_skeleton_tiles(count, tiles):
    page = reserve_slots(f'<div data-adserve-slot="widget" data-adserve-title="Don&#x27;t &lt;Miss&gt;"{count} '
                         'data-adserve-footer="About &amp; more">\n</div>', PLACEMENTS)
    tags = Tags(page)
    assert tags.find("div")[0]["class"] == "adserve-recs"
    assert [li["class"] for li in tags.find("li")] == ["adserve-rec adserve-rec--skeleton"] * tiles
    assert [t for t in tags.text if t.strip()][1:] == ["Don't <Miss>", "About & more"]  # escaped once, as given
    assert tags.find("h2") == [{"class": "adserve-recs-heading"}]


def test_filled_or_foreign_markup_is_left_alone():
    markup = ('<div data-adserve-slot="widget"><p>own</p></div>'
              '<div data-adserve-slot="widget" data-adserve-type="video"></div>')
    assert reserve_slots(markup, PLACEMENTS) == f"<style>{BASE_CSS}</style>\n" + markup
