"""The slot route's fast lane (``fastlane.py``): what it relies on of aiohttp, pinned.

Its answers are compared byte for byte in ``test_slots_wire.py``; these tests say why they would
change after an aiohttp upgrade: the server's handler no longer read per connection, the match
info not where ``request.app`` finds it, the Date header's format.
"""

from __future__ import annotations

import re
import socket

import aiohttp
from aiohttp import web

from adserve.server import fastlane, listener
from adserve.server.app import SLOTS, create_app

from .conftest import EXAMPLE_REQUEST


async def started(app: web.Application):
    """``app`` as ``listener.listen`` starts it, on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner, sockets = await listener.listen(app, sock, 100, 15.0, lambda: None)
    return runner, sockets, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def stopped(runner, sockets) -> None:
    sockets.close()
    await runner.cleanup()


def spied(app: web.Application) -> list[str]:
    """The paths aiohttp's router resolves from now on."""
    resolved, resolve = [], app.router.resolve

    async def spy(request):
        resolved.append(request.path)
        return await resolve(request)
    app.router.resolve = spy
    return resolved


async def test_slot_requests_skip_the_router_and_nothing_else_does(make_server):
    app = create_app(make_server())
    app.on_startup.clear()
    app.on_cleanup.clear()
    resolved = spied(app)
    runner, sockets, url = await started(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + SLOTS, json=EXAMPLE_REQUEST) as answer:
                assert answer.status == 200 and (await answer.json())["slots"]["s1"]["fill"]
            async with session.post(url + SLOTS, json=EXAMPLE_REQUEST, expect100=True) as answer:
                assert answer.status == 200
            for method, path in (("GET", SLOTS), ("POST", SLOTS + "/"), ("GET", "/healthz")):
                async with session.request(method, url + path) as answer:
                    await answer.read()
    finally:
        await stopped(runner, sockets)
    assert resolved == [SLOTS, SLOTS, SLOTS + "/", "/healthz"]  # the one with Expect, and the others


async def test_the_lane_gives_its_handler_the_match_info_and_app_of_aiohttps_router():
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.app, request.match_info.route, dict(request.match_info)))
        return fastlane.JsonAnswer(b"{}", {"Content-Type": "application/json"})
    app = web.Application()
    app[fastlane.ROUTE] = app.router.add_post("/lane", handler)
    resolved = spied(app)
    runner, sockets, url = await started(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/lane", data=b"{}") as answer:
                assert answer.status == 200 and await answer.read() == b"{}"
                assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                                    answer.headers["Date"])
    finally:
        await stopped(runner, sockets)
    assert not resolved and seen == [(app, app[fastlane.ROUTE], {})]


async def test_no_lane_past_a_middleware():
    """The lane would skip it: an app that has one keeps aiohttp's way for every request."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="handler")

    @web.middleware
    async def middleware(request, handler):
        return web.Response(text="middleware")
    app = web.Application(middlewares=[middleware])
    app[fastlane.ROUTE] = app.router.add_post("/lane", handler)
    runner, sockets, url = await started(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/lane") as answer:
                assert await answer.text() == "middleware"
    finally:
        await stopped(runner, sockets)


def test_the_app_has_nothing_the_lane_or_its_answer_would_skip(make_server):
    """No middleware (the lane skips them) and no prepare signal (``JsonAnswer`` skips them)."""
    app = create_app(make_server())
    assert app[fastlane.ROUTE].resource.canonical == SLOTS and app[fastlane.ROUTE].method == "POST"
    assert not app.middlewares and not app.on_response_prepare
