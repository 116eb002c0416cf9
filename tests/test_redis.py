"""Shared state in a real Redis: two replicas enforce one frequency cap and count a token once."""

from __future__ import annotations

import copy
import uuid

import pytest

from adserve.server.app import create_app
from adserve.state import RedisState

from .conftest import EXAMPLE_REQUEST
from .test_server import local, logged, post_slots

pytestmark = pytest.mark.redis


async def test_counters_add_expire_and_mark_once(redis_url):
    state = RedisState(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    try:
        assert await state.get_many(["a", "b"]) == [0.0, 0.0]
        await state.add({"a": 1.5, "b": 2.0}, {"a": 60, "b": 1})
        await state.add({"a": 1.0}, {"a": 60})
        assert await state.get_many(["a", "b"]) == [2.5, 2.0]
        # each key expires after the TTL it was created with; a later add does not extend it
        assert 0 < await state._redis.pttl(state._prefix + "b") <= 1000
        assert 59_000 < await state._redis.pttl(state._prefix + "a") <= 60_000
        await state._redis.pexpire(state._prefix + "a", 60_000 * 10)
        await state.add({"a": 1.0}, {"a": 60})
        assert await state._redis.pttl(state._prefix + "a") > 60_000
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

