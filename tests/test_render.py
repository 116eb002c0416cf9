"""Server-side rendering: the loader's markup from a slot answer, escaped and sandboxed."""

from __future__ import annotations

import copy
import time
from html.parser import HTMLParser
from pathlib import Path

from adserve.render import SANDBOX, render_slot

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


def test_unfilled_slot_renders_hidden():
    assert Tags(render_slot("s9", {"type": "display", "fill": False})).find("div")[0]["hidden"] is None


def test_loader_and_readme_use_the_same_sandbox():
    """One set of sandbox flags: the loader's frame is render.py's, and the README names each."""
    repo = Path(__file__).resolve().parent.parent
    loader = (repo / "adserve" / "static" / "adserve.js").read_text()
    assert f'frame.setAttribute("sandbox", "{SANDBOX}")' in loader
    readme = (repo / "README.md").read_text()
    for flag in SANDBOX.split():
        assert f"`{flag}`" in readme, flag
