"""The slot route's fast lane (``fastlane.py``) attacked: what its short ways must not skip.

``JsonAnswer`` writes its head itself instead of through ``StreamResponse``'s preparation, and
it answers on every path to the slot handler (the lane, aiohttp's router for ``Expect``, the test
client). Whatever that preparation would do for an answer must still happen: an app's
``on_response_prepare`` signals (added after ``create_app``, before the listener starts, when the
app can still take them), and what a caller set on the answer (``force_close``, cookies).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from adserve.server import fastlane
from adserve.server.app import SLOTS, create_app

from .conftest import EXAMPLE_REQUEST
from .test_fastlane import started, stopped


async def test_prepare_signals_reach_the_slot_answer(make_server):
    """A signal added before the listener starts sees every answer, the lane's included."""
    app = create_app(make_server())
    app.on_startup.clear()
    app.on_cleanup.clear()
    prepared = []

    async def stamp(request: web.Request, response: web.StreamResponse) -> None:
        prepared.append(request.path)
        response.headers["X-Prepared"] = "yes"
    app.on_response_prepare.append(stamp)
    runner, sockets, url = await started(app)
    try:
        async with aiohttp.ClientSession() as session:
            for expect in (False, True):  # the lane, and aiohttp's router (Expect)
                async with session.post(url + SLOTS, json=EXAMPLE_REQUEST, expect100=expect) as answer:
                    assert answer.status == 200 and (await answer.json())["slots"]["s1"]["fill"]
                    assert answer.headers.get("X-Prepared") == "yes"
            async with session.get(url + "/healthz") as answer:
                assert answer.headers.get("X-Prepared") == "yes"
    finally:
        await stopped(runner, sockets)
    assert prepared == [SLOTS, SLOTS, "/healthz"]


async def test_what_a_caller_sets_on_the_answer_is_written():
    """``force_close`` closes the connection and says so; a cookie is sent; both as aiohttp would."""
    async def handler(request: web.Request) -> web.StreamResponse:
        answer = fastlane.JsonAnswer(b'{"ok":1}', {"Content-Type": "application/json"})
        answer.set_cookie("seen", "1")
        answer.force_close()
        return answer
    app = web.Application()
    app[fastlane.ROUTE] = app.router.add_post("/lane", handler)
    runner, sockets, url = await started(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/lane", data=b"{}") as answer:
                assert answer.status == 200 and await answer.read() == b'{"ok":1}'
                assert answer.headers.get("Connection") == "close"
                assert answer.cookies["seen"].value == "1"
                assert answer.headers["Content-Length"] == "8"
    finally:
        await stopped(runner, sockets)
