"""Counts you can bill on: caps and budgets hold when answers race ahead of their pixels.

A decision reserves what its ad will count; the pixel confirms the reservation. Whatever the
interleaving of page views, pixels, clicks, expiries and restarts, billable events never pass
a limit, on the embedded store and on a Redis shared by two server processes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from adserve.events import log_files, read_events
from adserve.config import load_config
from adserve.server.app import SERVER, AdServer, create_app
from adserve.state import MemoryState, RedisState, StateUnavailable

from .conftest import EXAMPLE_REQUEST, SECRET, FakeClock
from .live import LiveServer

LIMITED = 500


def campaign_yaml(cid: int, tier: str, price: str, budget: str, cap: str = "") -> str:
    """One 300x250 campaign of the test books, as config YAML."""
    return f"""
  - id: {cid}
    name: Test {cid}
    advertiser: Advertiser {cid}
    flight: {{start: 2026-01-01T00:00:00Z, end: 2030-01-01T00:00:00Z}}
    tier: {tier}
    price: {price}
    budget: {budget}
    pacing: asap
    {cap}
    creatives:
      - id: cr-{cid}
        size: 300x250
        landing_url: https://adv{cid}.example/
        variants:
          - {{id: A, image_url: /static/creatives/house-300x250.svg}}
"""


def limited_book(folder: Path, cap: int, total: int, server: str = "", more: str = "") -> None:
    """Only campaign 500 (capped, budgeted), ``more`` campaigns, and the house ads that fill in."""
    for name in ("display.yaml", "native.yaml"):
        (folder / "config" / "campaigns" / name).unlink()
    limited = campaign_yaml(LIMITED, "standard", "{model: cpm, amount: 10.0}",
                            f"{{metric: impressions, total: {total}}}", f"frequency_cap: {{count: {cap}, period: day}}")
    (folder / "config" / "campaigns" / "limited.yaml").write_text("campaigns:" + limited + more)
    if server:
        site = folder / "config" / "site.yaml"
        site.write_text(site.read_text().replace("server:\n", f"server:\n{server}", 1))


def page(reader: str) -> dict:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["user"] = {"id": reader}
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    return body


def billed(folder: Path) -> list[dict]:
    return [e for e in read_events(log_files(folder / "var" / "events"))
            if e["type"] == "impression" and e["campaign"] == LIMITED and e.get("billable", e["counted"])]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def views_then_pixels(posts: list, pixel) -> int:
    """All page views at once, then every pixel: how many answers carried campaign 500."""
    answers = await asyncio.gather(*posts)
    fills = [a["slots"]["s1"] for a in answers]
    await asyncio.gather(*(pixel(i, f["impression_url"]) for i, f in enumerate(fills) if f["fill"]))
    return sum(f.get("campaign_id") == LIMITED for f in fills)


@pytest.mark.parametrize("readers, views, cap, total", [(1, 20, 3, 1000), (200, 1, 100, 50)])
async def test_answers_before_pixels_never_pass_a_cap_or_budget(aiohttp_client, make_server, workdir,
                                                                 readers, views, cap, total):
    limited_book(workdir, cap, total)
    client = await aiohttp_client(create_app(make_server()))

    async def post(body):
        response = await client.post("/v1/slots", json=body)
        while response.status == 503:  # shed under the machine's load: a client retries
            response = await client.post("/v1/slots", json=body)
        assert response.status == 200
        return await response.json()

    async def pixel(_i, url):
        assert (await client.get(local(url))).status == 200

    posts = [post(page(f"r{n}")) for n in range(readers) for _ in range(views)]
    served = await views_then_pixels(posts, pixel)
    assert served == len(billed(workdir)) == min(cap * readers, total)


async def test_a_pixel_whose_settle_ran_but_whose_answer_was_lost_reconciles_as_billed(aiohttp_client, make_server,
                                                                                       workdir):
    """A shared store can run a pixel's settle and lose the reply (it came after the wait): the
    hit is logged undecided, and its reconcile must log what that call did (counted, billable),
    not call the hit a repeat of its own token while the counters moved for it."""
    limited_book(workdir, 3, 50)
    server = make_server()
    client = await aiohttp_client(create_app(server))
    settle = server.state.settle

    async def reply_lost(*args, **kwargs):
        await settle(*args, **kwargs)
        raise StateUnavailable("no reply within 1.0 s")

    server.state.settle = reply_lost
    fill = (await (await client.post("/v1/slots", json=page("r1"))).json())["slots"]["s1"]
    assert fill["campaign_id"] == LIMITED
    assert (await client.get(local(fill["impression_url"]))).status == 200
    server.state.settle = settle
    [undecided] = [e for e in read_events(log_files(workdir / "var" / "events")) if e["type"] == "impression"]
    assert undecided["counted"] is None
    await server.tracker.reconcile(undecided, server.runtime)
    [reconciled] = [e for e in read_events(log_files(workdir / "var" / "events")) if e.get("reconciled")]
    assert reconciled["counted"] is True and reconciled["billable"] is True
    assert len(billed(workdir)) == 1


@pytest.mark.redis
async def test_two_processes_on_one_redis_never_pass_a_budget(tmp_path, redis_url):
    import redis as sync_redis

    url = redis_url.rsplit("/", 1)[0] + "/7"  # a database of its own: the servers' default prefix
    sync_redis.Redis.from_url(url).flushdb()
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        LiveServer(tmp_path / name)  # copies the config
        limited_book(tmp_path / name, 100, 50, f"  redis_url: {url}\n")
        servers.append(LiveServer(tmp_path / name, options=("--writer", name)))
    try:
        for server in servers:
            server.start()
        async with aiohttp.ClientSession() as session:
            async def post(n, body):
                while True:  # a shed request (503) is retried, as a client would
                    async with session.post(servers[n % 2].url + "/v1/slots", json=body) as response:
                        if response.status != 503:
                            assert response.status == 200
                            return await response.json()

            async def pixel(i, url):  # the other process confirms what one reserved
                async with session.get(servers[(i + 1) % 2].url + local(url)) as response:
                    assert response.status == 200

            served = await views_then_pixels([post(n, page(f"r{n}")) for n in range(200)], pixel)
    finally:
        for server in servers:
            server.stop()
    assert served == len(billed(tmp_path / "a")) + len(billed(tmp_path / "b")) == 50


# -- random interleavings against a reference model ---------------------------------------------

HOLD = 300
CLICKY = campaign_yaml(600, "remnant", "{model: cpc, amount: 0.5}", "{metric: clicks, total: 2}")
OPS = st.lists(st.one_of(
    st.tuples(st.just("view"), st.sampled_from(["u0", "u1", "u2"])),
    st.tuples(st.sampled_from(["pixel", "click"]), st.integers(0, 25)),
    st.tuples(st.just("wait"), st.sampled_from([10, 200, 400])),
    st.tuples(st.just("restart"), st.just(0))), max_size=30)


class Reference:
    """What the books must say: 500 capped at 2 per reader and 4 in all, 600 at 2 clicks, house free.

    Tiers are strict, so each view's campaign is determined: 500 if it fits, else 600, else house.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.seen: dict[str, int] = {}   # impressions of 500 billed per reader
        self.clicks = 0                  # clicks of 600 billed
        self.pending: dict[int, tuple[str, float]] = {}  # view -> (reader, release time)
        self.hits: set[tuple[str, int]] = set()

    def _held(self, user: str | None = None) -> int:
        self.pending = {v: (u, t) for v, (u, t) in self.pending.items() if t > self.now}
        return sum(1 for u, _ in self.pending.values() if user in (None, u))

    def _fits(self, user: str) -> bool:
        return self.seen.get(user, 0) + self._held(user) < 2 and sum(self.seen.values()) + self._held() < 4

    def view(self, view: int, user: str) -> int:
        if self._fits(user):
            self.pending[view] = (user, self.now + HOLD)
            return LIMITED
        return 600 if self.clicks < 2 else 90001

    def billable(self, kind: str, view: int, campaign: int, user: str) -> bool:
        """A repeat of a hit is not counted, so not billable either."""
        if (kind, view) in self.hits:
            return False
        self.hits.add((kind, view))
        if kind == "impression" and campaign == LIMITED:
            held = self._held() and self.pending.pop(view, None) is not None
            billable = held or self._fits(user)
            self.seen[user] = self.seen.get(user, 0) + billable
            return billable
        if kind == "click" and campaign == 600:
            billable = self.clicks < 2
            self.clicks += billable
            return billable
        return True


async def _interleave(ops, workdir: Path, loaded, store) -> None:
    """Run ``ops`` on an AdServer over HTTP, checking every answer and pixel against the model."""
    note(repr(ops))
    clock = FakeClock()
    events = Path(tempfile.mkdtemp(dir=workdir))
    config = dataclasses.replace(loaded.config, server=dataclasses.replace(
        loaded.config.server, event_dir=str(events), reservation_seconds=HOLD))

    async def start(state):
        server = AdServer(workdir / "config", dataclasses.replace(loaded, config=config), SECRET,
                          state=state, clock=clock, rng=random.Random(1))
        client = TestClient(TestServer(create_app(server)))
        await client.start_server()
        return client

    model, fills = Reference(), []
    client = await start(store(clock))
    try:
        for op, arg in ops:
            if op == "view":
                response = await client.post("/v1/slots", json=page(arg))
                fill = (await response.json())["slots"]["s1"]
                assert fill["campaign_id"] == model.view(len(fills), arg)
                fills.append((fill, arg))
            elif op in ("pixel", "click") and arg < len(fills):
                (fill, user), kind = fills[arg], "impression" if op == "pixel" else "click"
                url = fill["impression_url" if op == "pixel" else "click_url"]
                assert (await client.get(local(url), allow_redirects=False)).status in (200, 302)
                last = list(read_events(log_files(events), types=frozenset({kind})))[-1]
                assert last["billable"] == model.billable(kind, arg, fill["campaign_id"], user)
            elif op == "wait":
                clock.advance(seconds=arg)
                model.now += arg
            elif op == "restart":
                await client.close()
                client = await start(store(clock))
                if isinstance(client.server.app[SERVER].state, MemoryState):
                    model.pending.clear()  # held only in the process that stopped
    finally:
        await client.close()


@pytest.fixture
def interleaved(workdir):
    limited_book(workdir, 2, 4, more=CLICKY)
    loaded = load_config(workdir / "config", now=FakeClock()())
    assert loaded.ok, loaded.errors
    return loaded


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_interleavings_match_the_reference_on_memory(workdir, interleaved, ops):
    asyncio.run(_interleave(ops, workdir, interleaved, lambda clock: None))


@pytest.mark.redis
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_interleavings_match_the_reference_on_redis(workdir, interleaved, redis_url, ops):
    prefix = f"t{uuid.uuid4().hex}:"
    asyncio.run(_interleave(ops, workdir, interleaved,
                            lambda clock: RedisState(redis_url, prefix, lambda: clock().timestamp())))
