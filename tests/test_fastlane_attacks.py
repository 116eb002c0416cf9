"""The slot route's fast lane (``fastlane.py``) attacked: what its short ways must not skip.

``JsonAnswer`` writes its head itself instead of through ``StreamResponse``'s preparation, and
it answers on every path to the slot handler (the lane, aiohttp's router for ``Expect``, the test
client). Whatever that preparation would do for an answer must still happen: an app's
``on_response_prepare`` signals (added after ``create_app``, before the listener starts, when the
app can still take them), and what a caller set on the answer (``force_close``, cookies). And
the lane's requests must still be drained on a stop.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from adserve.server import fastlane, listener
from adserve.server.app import SLOTS, create_app

from .conftest import EXAMPLE_REQUEST
from .test_fastlane import started, stopped
from .test_slots_wire import BODY, read_answer


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


async def test_a_stop_answers_lane_requests_in_flight_and_closes_idle_connections(make_server):
    """``listener.drain`` on a stop: a slot request whose body is still on its way gets its 200,
    and a connection idle after a slot answer is closed then, not left open until the drain's
    deadline (with aiohttp 3.14, ``RequestHandler.close()`` on an idle connection ends its task
    but leaves its socket open, so every idle keep-alive client held a stop for 30 s)."""
    app = create_app(make_server())
    app.on_startup.clear()
    app.on_cleanup.clear()
    runner, sockets, url = await started(app)
    port = int(url.rsplit(":", 1)[1])
    request = (b"POST /v1/slots HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    try:
        idle = await asyncio.open_connection("127.0.0.1", port)
        idle[1].write(request)
        assert (await read_answer(idle[0])).startswith("HTTP/1.1 200 OK")
        busy = await asyncio.open_connection("127.0.0.1", port)
        busy[1].write(request[:-10])
        await busy[1].drain()
        while not any(listener.answering(connection) for connection in runner.server.connections):
            await asyncio.sleep(0.01)  # its handler is running, reading the body
        sockets.close()
        draining = asyncio.ensure_future(listener.drain(runner.server, seconds=2.0, every=0.01))
        busy[1].write(request[-10:])
        assert (await asyncio.wait_for(read_answer(busy[0]), 30)).startswith("HTTP/1.1 200 OK")
        await draining
        assert not runner.server.connections  # none left: the drain did not end at its deadline
        assert await asyncio.wait_for(idle[0].read(), 30) == b""  # the idle one closed by the drain
        for _, writer in (idle, busy):
            writer.close()
    finally:
        await stopped(runner, sockets)
