"""The slot route's short way through aiohttp's web layer: straight to its handler, and its
answer's head written with the body in one go.

Between parsing a request and calling a handler aiohttp resolves the route (a coroutine per
candidate resource and a match-info object), adds the app, freezes it, checks for ``Expect`` and
middlewares; after the handler it prepares a ``Response`` through a chain of coroutines that
decide cookies, compression, chunking, content length, keep-alive and signals. For
``POST /v1/slots`` none of these varies: one route, no middleware, no signal, a JSON body
of known length. ``install`` routes that exact method and path straight to the route's handler
(everything else, and any request with ``Expect``, takes aiohttp's way as before), and
``JsonAnswer`` writes its head as aiohttp would, with fewer steps. The answers are byte for byte
aiohttp's (``tests/test_slots_wire.py``); aiohttp's parsing, keep-alive, flow control and
``StreamWriter`` stay in use. What this relies on of aiohttp beyond its documented API is pinned
in ``tests/test_fastlane.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

#: Where ``create_app`` names the route that ``install`` gives a fast lane.
ROUTE: web.AppKey[web.ResourceRoute] = web.AppKey("fast_lane_route")


class JsonAnswer(web.StreamResponse):
    """A 200 JSON answer whose head aiohttp's ``StreamWriter`` writes with the body, in one write.

    For what the slot route answers (no cookies, compression or chunking, no ``force_close``,
    no ``HEAD``, a body that is never empty, an app without ``on_response_prepare`` signals): the
    headers it has, then Content-Length, Date, Server and the Connection header aiohttp would
    add, in aiohttp's order. An answer with any of the first four, or on such an app, takes
    aiohttp's preparation instead. A ``StreamResponse`` rather than a ``Response``: none of the
    latter's body handling is used, and building one costs more.
    """

    _kept_alive: bool | None = None

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(headers=headers)
        self.body = body

    @property
    def keep_alive(self) -> bool | None:
        return self._kept_alive

    async def prepare(self, request: web.Request) -> None:
        if self._kept_alive is not None:
            return
        if self._keep_alive is not None or self._cookies or self._compression or self._chunked:
            return await self._prepare_as_aiohttp(request)
        for app in request._match_info._apps:  # those whose prepare signals aiohttp would send
            if app.on_response_prepare:
                return await self._prepare_as_aiohttp(request)
        self._kept_alive = keep_alive = request.keep_alive
        version = request.version
        headers = self.headers
        body = self.body
        headers.extend(((hdrs.CONTENT_LENGTH, str(len(body))), (hdrs.DATE, rfc822_formatted_time()),
                        (hdrs.SERVER, SERVER_SOFTWARE)))
        if keep_alive:
            if version == HttpVersion10:
                headers[hdrs.CONNECTION] = "keep-alive"
        elif version == HttpVersion11:
            headers[hdrs.CONNECTION] = "close"
        writer = request.writer
        await writer.write_headers(f"HTTP/{version[0]}.{version[1]} {self.status} {self.reason}", headers)
        await writer.write_eof(body)

    async def write_eof(self, data: bytes = b"") -> None:
        """Written with the head in ``prepare``."""

    async def _prepare_as_aiohttp(self, request: web.Request) -> None:
        """For an answer given what the short way does not write (a ``force_close``, cookies,
        compression, chunking, prepare signals): aiohttp's own preparation, then the body."""
        if not self._chunked:
            self.content_length = len(self.body)
        await super().prepare(request)
        self._kept_alive = self._keep_alive
        await super().write_eof(self.body)


def install(server: web.Server, app: web.Application) -> None:
    """Give ``app[ROUTE]`` (if named) its fast lane on ``server``: connections opened after this
    send its exact method and path, without ``Expect``, straight to its handler.

    Not on an app with middlewares, which the lane would skip.
    """
    route = app.get(ROUTE)
    if route is None or app.middlewares:
        return
    match_info = web.UrlMappingMatchInfo({}, route)  # what aiohttp's router gives this route
    match_info.add_app(app)
    match_info.freeze()
    method, path, handler = route.method, route.resource.canonical, route.handler
    elsewise = server.request_handler  # aiohttp's: the router, then the route's handler

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        if (request.method == method and request.rel_url.path_safe == path
                and not request.headers.get(hdrs.EXPECT)):
            request._match_info = match_info
            return await handler(request)
        return await elsewise(request)
    server.request_handler = dispatch
