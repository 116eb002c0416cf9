"""The listening socket: a cap on open connections, time limits, and arrival stamps for admission.

aiohttp alone accepts connections until the process runs out of file descriptors, and a client may
take as long as it likes to send a request head. Here every accepted connection past
``max_connections`` gets an immediate 503 and is closed, a request head must arrive within
``head_timeout_seconds`` of the connection opening or of its last answer (aiohttp's keep-alive
timer closes a connection that has not delivered a whole request by then), and each connection
notes, when its bytes arrive, how much admitted work the process had done so far. The front
door (``app.front``) then knows how much admitted work a request has queued behind: past the
limit it is refused. Counting only admitted work (not wall time, not event-loop lag) matters: refusals cost
CPU too, and a signal that includes them keeps itself high and refuses everything (with 2,000
connections each pass of the loop takes longer than the limit even when all it does is refuse).

A stop (SIGTERM, SIGINT) drains: no new connections, idle ones are closed, and requests already
being answered finish, their bodies still being read, for up to ``DRAIN_SECONDS``. aiohttp's own
shutdown closes every connection first and then drops the bytes that arrive on it, so a request
whose body was still on its way got a 408 instead of its answer.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import time

from aiohttp import web

from . import fastlane, gcpolicy

DRAIN_SECONDS = 30.0  # the longest a stop waits for requests being answered
FD_HEADROOM = 64  # descriptors kept for the event log, the catalog journal, Redis and the like
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
           b"Content-Length: 61\r\nConnection: close\r\n\r\n"
           b'{"error":"overloaded","detail":"too many open connections"}\r\n')


class Work:
    """Seconds spent answering admitted requests in this process, summed since start.

    Process-wide on purpose: the CPU that requests queue for is the process's.
    """
    done = 0.0

    @classmethod
    def add(cls, started: float, waited: float = 0.0) -> None:
        """Count a request's time in its handler since ``started``, less ``waited`` on other
        processes (others ran meanwhile, and count their own work)."""
        cls.done += time.perf_counter() - started - waited


_received = web.RequestHandler.data_received


class StampedHandler(web.RequestHandler):
    """aiohttp's connection handler, noting the admitted work done when its latest bytes arrived."""

    __slots__ = ("arrived_at_work", "listener")

    def data_received(self, data: bytes) -> None:
        self.arrived_at_work = Work.done
        _received(self, data)  # the base's method, bound once: no ``super()`` per chunk

    def connection_lost(self, exc: BaseException | None) -> None:
        self.listener.open -= 1
        super().connection_lost(exc)


def answering(connection: web.RequestHandler) -> bool:
    """Whether the connection is answering a request: from its handler's start (the body may
    still be on its way) until the answer is written. aiohttp's handler keeps this flag itself,
    for its own shutdown; reading it costs a request nothing (a middleware that set a flag of
    ours cost ~2 µs a request, PROFILE.md, seventh round)."""
    return connection._request_in_progress


def waiting(connection: web.RequestHandler) -> bool:
    """Whether the connection is waiting for a request: none being answered or received whole."""
    waiter = connection._waiter
    return waiter is not None and not waiter.done()


async def drain(server: web.Server, seconds: float = DRAIN_SECONDS, every: float = 0.05) -> None:
    """Close connections as soon as they are idle, until none is left or ``seconds`` have passed.

    An idle one is force-closed: aiohttp's ``close()`` (since 3.14) ends its task but leaves its
    socket open until the deadline. Between two requests (the next received, its handler not yet
    started) ``close()`` lets it answer that one and then closes it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while server.connections and loop.time() < deadline:
        for connection in server.connections:
            if waiting(connection):
                connection.force_close()  # idle: it ends now
            elif not answering(connection):
                connection.close()  # it ends after what it received; answering: answer goes out first
        await asyncio.sleep(every)


def queued_behind(request: web.BaseRequest) -> float:
    """Seconds of admitted work done since the request's bytes arrived (0 without a stamp: tests)."""
    arrived = getattr(request.protocol, "arrived_at_work", None)
    return 0.0 if arrived is None else Work.done - arrived


class _Refusal(asyncio.Protocol):
    """Answers one 503 and closes: the cheapest way to say no to a connection past the cap."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(REFUSAL)
        transport.close()


def connection_cap(configured: int) -> int:
    """``configured``, kept below the process's soft descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return configured if soft == resource.RLIM_INFINITY else max(1, min(configured, soft - FD_HEADROOM))


class Listener:
    """The protocol factory given to ``loop.create_server``: admits up to ``cap`` connections.

    It counts them itself: asyncio calls the factory at accept time but ``connection_made`` (where
    aiohttp lists a connection) a loop pass later, so a burst of connects would pass a cap on
    aiohttp's list.
    """

    def __init__(self, server: web.Server, cap: int, on_refusal, **handler_args) -> None:
        self.server = server
        self.cap = cap
        self.open = 0
        self.on_refusal = on_refusal
        self.handler_args = handler_args

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self.cap:
            self.on_refusal()
            return _Refusal()
        self.open += 1
        handler = StampedHandler(self.server, loop=asyncio.get_running_loop(), **self.handler_args)
        handler.listener = self
        return handler


async def listen(app: web.Application, sock: socket.socket, max_connections: int, head_timeout: float,
                 on_refusal) -> tuple[web.AppRunner, asyncio.Server]:
    """``app`` started, with the slot route's fast lane, and accepting on ``sock`` through the
    ``Listener``: what ``serve`` runs."""
    handler_args = {"keepalive_timeout": head_timeout, "access_log": None}
    runner = web.AppRunner(app, handle_signals=False, **handler_args)
    await runner.setup()
    fastlane.install(runner.server, app)
    listener = Listener(runner.server, connection_cap(max_connections), on_refusal, **handler_args)
    return runner, await asyncio.get_running_loop().create_server(listener, sock=sock, backlog=1024)


async def serve(app: web.Application, sock: socket.socket, max_connections: int,
                head_timeout: float, on_refusal, ready=lambda: None) -> None:
    """Run ``app`` on the bound ``sock`` until SIGINT or SIGTERM, then shut down cleanly.

    The caller binds it before anything starts, so a taken port or a foreign address is its
    one-line error rather than a traceback from inside the loop.
    """
    runner, sockets = await listen(app, sock, max_connections, head_timeout, on_refusal)
    gcpolicy.start()  # full collections walk only what is new (gcpolicy.py)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready()
    try:
        await stop.wait()
    finally:
        sockets.close()  # no new connections; then answer the open ones, close them, run cleanup
        await drain(runner.server)
        await runner.cleanup()
        await sockets.wait_closed()
