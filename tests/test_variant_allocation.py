"""Thompson allocation of variants: it shifts new readers toward a planted better variant, keeps
every variant's floor, keeps returning readers on their variant, and changes nothing when off."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from adserve import retention
from adserve.config import load_config
from adserve.decision import AdNeed
from adserve.server.app import SERVER, create_app
from adserve.state import MemoryState
from adserve.variant_allocation import count_key

from .conftest import EXAMPLE_REQUEST, FakeClock
from .test_decision import campaign, decider, request
from .test_server import edit, local, post_slots

CTR = {"A": 0.02, "B": 0.06, "C": 0.02}  # B is planted better


def thompson_decider(min_share=0.1, variants=("A", "B", "C")):
    clock = FakeClock()
    d = decider([campaign(1, variants=[(v, 1.0) for v in variants], variant_optimization="thompson",
                          min_share=min_share)], clock=clock)
    return d, clock


async def serve(d, reader: str):
    fill = (await d.decide(request(user={"id": reader}), [AdNeed("s0", ("300x250",), None)]))["s0"]
    return fill.variant.id


async def simulate(d, clock, readers: int, rng: random.Random) -> list[str]:
    """New readers, one a second; each impression counts, and is clicked at its variant's CTR."""
    shown = []
    for n in range(readers):
        clock.advance(seconds=1)
        variant = await serve(d, f"new-{n}")
        shown.append(variant)
        hit = {"creative": "cr-1", "variant": variant, "token": f"t{n}"}
        await d.allocation.count({**hit, "type": "impression"}, 3600)
        if rng.random() < CTR[variant]:
            await d.allocation.count({**hit, "type": "click"}, 3600)
    return shown


def test_new_readers_shift_toward_the_better_variant_and_every_floor_holds():
    d, clock = thompson_decider(min_share=0.1)
    creative = d.inventory.campaigns[1].creatives[0]
    assert asyncio.run(d.allocation.shares(creative)) == pytest.approx([1 / 3] * 3, abs=1e-5)  # nothing counted yet
    shown = asyncio.run(simulate(d, clock, 2500, random.Random(5)))
    last = Counter(shown[-1000:])
    assert last["B"] / 1000 > 0.65
    shares = asyncio.run(d.allocation.shares(creative))
    assert min(shares) == pytest.approx(0.1, abs=0.01) and sum(shares) == pytest.approx(1.0)
    assert min(last["A"], last["C"]) / 1000 > 0.06  # the floor keeps the losers explored


def test_a_returning_reader_keeps_their_variant_while_the_weights_move():
    d, clock = thompson_decider()
    before = [asyncio.run(serve(d, f"back-{n}")) for n in range(30)]
    asyncio.run(simulate(d, clock, 1500, random.Random(9)))
    assert [asyncio.run(serve(d, f"back-{n}")) for n in range(30)] == before
    assert set(before) == {"A", "B", "C"}  # the ones drawn A or C before the shift too


def test_without_the_option_variants_follow_the_fixed_split_and_nothing_is_stored():
    d = decider([campaign(1, variants=(("A", 1.0), ("B", 3.0)))])
    creative = d.inventory.campaigns[1].creatives[0]
    assert not d.allocation.floors
    for n in range(200):
        assert asyncio.run(serve(d, f"r{n}")) == d.variant(creative, f"r{n}").id
    asyncio.run(d.allocation.count({"type": "impression", "creative": "cr-1", "variant": "A", "token": "t"}, 60))
    assert not any(key.startswith("ab:") for key in d.state.snapshot())


def test_an_override_on_the_creative_wins_over_its_campaign():
    c = campaign(1, variants=(("A", 1.0), ("B", 1.0)), variant_optimization="thompson", min_share=0.2)
    c.creatives[0].min_share = 0.4
    assert c.thompson_floor(c.creatives[0]) == 0.4
    c.creatives[0].variant_optimization = "fixed"
    assert c.thompson_floor(c.creatives[0]) is None


async def test_memory_store_assigns_once():
    state = MemoryState()
    assert await state.assign("k", "A", 60) == "A"
    assert await state.assign("k", "B", 60) == "A"


def test_floors_that_do_not_fit_are_an_error_at_their_line(tmp_path):
    (tmp_path / "c.yaml").write_text("""campaigns:
  - id: 1
    name: n
    advertiser: a
    flight: {start: 2026-01-01T00:00:00Z, end: 2030-01-01T00:00:00Z}
    price: {model: cpm, amount: 1}
    variant_optimization: thompson
    creatives:
      - id: x
        size: 300x250
        landing_url: https://a.example/
        min_share: 0.4
        variants:
          - {id: A, image_url: /a.svg}
          - {id: B, image_url: /b.svg}
          - {id: C, image_url: /c.svg}
""")
    result = load_config(tmp_path)
    assert not result.ok
    [error] = result.errors
    assert (error.line, error.path) == (12, "campaigns[0].creatives[0].min_share")
    assert "3 variants" in error.message
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text().replace("0.4", "0.3"))
    assert load_config(tmp_path).ok


async def test_settled_pixels_and_clicks_feed_the_counters_and_come_back_after_a_restart(
        aiohttp_client, make_server, workdir):
    edit(workdir, "campaigns/display.yaml", "    tier: standard\n    weight: 3",
         "    tier: standard\n    weight: 3\n    variant_optimization: thompson")
    client = await aiohttp_client(create_app(make_server()))
    fill = (await post_slots(client, EXAMPLE_REQUEST))["s1"]
    for url in (fill["impression_url"], fill["impression_url"], fill["click_url"]):  # a repeated pixel
        await client.get(local(url), allow_redirects=False)
    keys = [count_key(fill["creative_id"], fill["variant"], kind) for kind in ("impression", "click")]
    state = client.server.app[SERVER].state
    assert await state.get_many(keys) == [1.0, 1.0]
    await client.close()  # a restart replays the log: the counters are rebuilt, not lost
    restarted = await aiohttp_client(create_app(make_server()))
    assert await restarted.server.app[SERVER].state.get_many(keys) == [1.0, 1.0]
    await restarted.close()
    assigned = f"ab:r:{fill['creative_id']}:reader-42"
    checkpoint = restarted.server.app[SERVER].replay.checkpoint
    assert assigned.encode() in checkpoint.read_bytes()  # forgetting the reader forgets their variant
    erased = retention.forget("reader-42", workdir / "var" / "events", workdir / "var" / "model.npz")
    assert assigned in erased.checkpointed and assigned.encode() not in checkpoint.read_bytes()
