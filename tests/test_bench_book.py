"""benchmarks/bench_book.py serves what its report says: the books it builds, read back from their
YAML files, and the page views its wrk script sends (checked on a server that records them)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_book as bench  # noqa: E402

from adserve.config import load_config  # noqa: E402
from adserve.request import parse_slot_request  # noqa: E402
from tests.conftest import require  # noqa: E402
from tests.live import free_port  # noqa: E402

NOW = dt.datetime(2026, 12, 2, 15, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def worlds():
    return bench.worlds(NOW)


@pytest.mark.parametrize("world, key", [("review", (100, "per campaign")), ("narrow", (100, "equal")),
                                        ("broad", (100, "per campaign"))])
def test_a_book_written_as_yaml_loads_back_field_for_field(worlds, tmp_path, world, key):
    book = worlds[world].books[key]
    loaded = load_config(bench.write_book(tmp_path, book, "redis://127.0.0.1:1/3") / "config")
    assert loaded.ok, loaded.errors[:3]
    assert [dataclasses.asdict(c) for c in loaded.config.campaigns] == [dataclasses.asdict(c) for c in book.campaigns]
    assert loaded.config.server.redis_url == "redis://127.0.0.1:1/3"
    assert loaded.config.site.timezone == book.site.timezone


def test_the_reviewers_book_matches_a_page_in_a_thousand(worlds):
    campaigns = worlds["review"].books[10_000, "per campaign"].campaigns
    targeted = [c for c in campaigns if c.tier != "house"]
    assert len(targeted) == 10_000
    assert all(len(c.targeting.sections) == 1 and len(c.targeting.keywords.include) == 3
               and len(c.targeting.devices) == 2 for c in targeted)
    by_section = {}
    for c in targeted:
        by_section.setdefault(c.targeting.sections[0], []).append((set(c.targeting.keywords.include),
                                                                   c.targeting.devices))
    pages = worlds["review"].pages[:400]  # each viewed on every device a view draws from
    matched = sum(1 for page in pages for words, devices in by_section[page["section"]]
                  if words & set(page["keywords"]) for device in bench.DEVICES if device in devices)
    assert 0.0005 < matched / (len(pages) * len(bench.DEVICES) * len(targeted)) < 0.0015


async def _sent(script: Path, seconds: int = 1) -> list[bytes]:
    """The bodies wrk sends with ``script`` to a server that records them."""
    bodies = []

    async def record(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/slots", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        wrk = await asyncio.create_subprocess_exec(
            require("wrk"), "-t1", "-c4", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}/v1/slots",
            "--", "1000000000000", stdout=asyncio.subprocess.DEVNULL)
        await wrk.wait()
    finally:
        await runner.cleanup()
    return bodies


@pytest.mark.parametrize("world", ["review", "narrow"])
def test_fresh_views_are_new_contexts_and_cached_ones_come_from_a_few(worlds, tmp_path, world):
    traffic = worlds[world]
    fresh = [json.loads(b) for b in asyncio.run(_sent(traffic.script(tmp_path, cached=False)))]
    assert len(fresh) > 200
    views = [parse_slot_request(body, bench.PLACEMENTS, 20) for body in fresh]
    assert len({v.page.url for v in views}) == len(views)  # every context new
    assert {v.page.item_id for v in views} <= {p["item_id"] for p in traffic.pages}
    assert len({v.user_id for v in views}) < len(views)  # readers come back: their caps refuse draws
    assert len({v.device for v in views}) > 2 and len({v.country for v in views}) > 2
    assert [s["placement"] for s in fresh[0]["slots"]] == [s["placement"] for s in traffic.slots]
    page = next(p for p in traffic.pages if p["item_id"] == views[0].page.item_id)
    assert (views[0].page.section, sorted(views[0].page.keywords)) == (page["section"], sorted(page["keywords"]))

    cached = [json.loads(b) for b in asyncio.run(_sent(traffic.script(tmp_path, cached=True)))]
    assert len(cached) > 2 * bench.WARM_CONTEXTS
    contexts = [{k: v for k, v in body.items() if k != "user"} for body in cached]
    kept = [json.loads(c + "}") for c in traffic.contexts()]
    assert all(c in kept for c in contexts)  # every view one of the kept contexts...
    assert len({json.dumps(c) for c in contexts}) > bench.WARM_CONTEXTS * 0.9  # ...nearly all of them met
    assert len({v.user_id for v in map(lambda b: parse_slot_request(b, bench.PLACEMENTS, 20), cached)}) > 200
