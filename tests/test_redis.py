"""Shared state in a real Redis: two replicas enforce one frequency cap and count a token once."""

from __future__ import annotations

import asyncio
import copy
import uuid

import pytest

from adserve.ledger import Limit
from adserve.server.app import create_app
from adserve.state import RedisState

from .conftest import EXAMPLE_REQUEST
from .test_server import local, logged, post_slots

pytestmark = pytest.mark.redis


async def test_counters_add_expire_and_mark_once(redis_url):
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    a, b = Limit("a", 4.0, 1.5, "click", 60), Limit("b", None, 2.0, "click", 1)
    try:
        assert await state.get_many(["a", "b"]) == [0.0, 0.0]
        assert await state.settle("hit1", 60, None, (a, b))
        assert await state.settle("hit1", 60, None, (a, b))  # a retry: same answer, counted once
        assert await state.settle("hit2", 60, None, (a,))
        assert not await state.settle("hit3", 60, None, (a,))  # 4.5 would pass the limit of 4
        assert await state.get_many(["a", "b"]) == [3.0, 2.0]
        await asyncio.sleep(1.2)
        assert await state.get_many(["a", "b"]) == [3.0, 0.0]
        assert await state.first_time("tok", 60) is True
        assert await state.first_time("tok", 60) is False
    finally:
        await state.close()


async def test_two_replicas_share_caps_and_token_dedup(aiohttp_client, make_server, redis_url, workdir):
    prefix = f"t{uuid.uuid4().hex}:"
    replicas = [await aiohttp_client(create_app(make_server(state=RedisState(redis_url, prefix),
                                                            writer=name)))
                for name in ("r1", "r2")]
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["slots"] = [{"id": "s1", "type": "display", "sizes": ["300x250"]}]
    first = (await post_slots(replicas[0], body))["s1"]
    for replica in replicas:  # the same token hit on both replicas counts once
        assert (await replica.get(local(first["impression_url"]))).status == 200
    assert [e["counted"] for e in logged(workdir, "impression")] == [True, False]
    for n in range(4):  # 12174 is capped at 5 a day per reader, across replicas
        fill = (await post_slots(replicas[n % 2], body))["s1"]
        assert fill["campaign_id"] == 12174
        await replicas[(n + 1) % 2].get(local(fill["impression_url"]))
    for replica in replicas:
        assert (await post_slots(replica, body))["s1"]["campaign_id"] == 90001

