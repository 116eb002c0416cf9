"""One pipelined connection to Redis, shared by every request of a process (state and event stream).

redis-py costs ~100 µs of Python per command (a pool checkout under a lock and a timeout, a task
for the send's timeout, a timeout context for the read, metrics hooks): on a page backed by Redis
that was more than the page's own Redis work. Here each command is packed by hiredis (C) and
written to one connection as it is issued, without waiting for the replies of others (Redis
answers a connection's commands in order), and hiredis's C parser hands each reply to its
caller's future: ~15 µs a command, and one connection per process however many requests are in
flight.

A script that takes many calls at once (``run_each``) gets the calls issued in one turn of the
loop as one command: Redis's fixed cost of a script call, and a reply slot here, once per turn.

redis-py still opens the connection (every URL form, TLS, AUTH, SELECT), in RESP2, the protocol
parsed here. A broken connection, or a reply later than ``wait`` seconds, fails every command in
flight (later replies could no longer be matched to their callers) and drops the connection; the
next command opens a new one. A caller cancelled mid-command only leaves its reply unread.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, Awaitable

import hiredis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError, ResponseError, TimeoutError


class Script:
    """A Lua script, run by its SHA1 (sent whole only when Redis does not know it yet)."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


class CallError(ResponseError):
    """One call's own error in a command shared by many (``run_each``): Redis ran the command and
    the connection is fine; only this caller's part failed."""


class Pipe:
    """Every command of the process on one connection, each reply handed to its own caller."""

    def __init__(self, url: str, wait: float = 1.0) -> None:
        self._connections = ConnectionPool.from_url(url, protocol=2, socket_timeout=wait,
                                                    socket_connect_timeout=wait)  # only opens them
        self._wait = wait
        self._connection: _Connection | None = None
        self.drops = 0  # connections dropped: what the next one reaches may be a Redis restarted empty
        self._opening: asyncio.Future | None = None
        # commands issued in this turn of the loop, written at its end; a _Calls is packed then
        self._outgoing: list[bytes | _Calls] = []
        self._batches: dict[Script, _Calls] = {}  # run_each's calls of this turn, per script
        # (caller, reply deadline, a script's EVAL or None), in order
        self._pending: deque[tuple[asyncio.Future | _Calls, float, tuple | _Calls | None]] = deque()
        self._watch: asyncio.TimerHandle | None = None  # fires at the oldest pending deadline

    def call(self, *args: bytes | str | int | float) -> Awaitable[Any]:
        """One command's reply: bytes, int, None or a list of them; a Redis error raises ResponseError.

        Once connected, the command is written (at the end of this turn of the loop) when it is
        called and its caller's future comes back as it is: no coroutine frame per command."""
        if self._connection is None:
            return self._opened(args, None)
        return self._issue(args, None)

    async def call_many(self, commands: list[tuple]) -> list[Any]:
        """Several commands written at once, their replies in order (one round trip)."""
        if self._connection is None:
            await self._open()
        return await asyncio.gather(*[self._issue(args, None) for args in commands])

    def run(self, script: Script, *args: bytes | str | int | float) -> Awaitable[Any]:
        """``script``'s reply, run by its SHA1; when Redis does not know it (restarted, or a new
        server), the reply's NOSCRIPT error sends it whole to the same caller (EVAL also caches it)."""
        command = (b"EVALSHA", script.sha, 0, *args)
        whole = (b"EVAL", script.source, 0, *args)
        if self._connection is None:
            return self._opened(command, whole)
        return self._issue(command, whole)

    def run_each(self, script: Script, shared: tuple, *args: bytes | str | int | float) -> Awaitable[Any]:
        """One call of a script written to take many: ARGV is ``shared`` (the first call's), then
        each call's ``args``, and it answers a list of one reply per call. The calls of one turn
        of the loop go as one command; each caller gets its own reply (an error reply fails that
        caller alone, with ``CallError``)."""
        if self._connection is None:
            return self._opened_each(script, shared, args)
        packed = hiredis.pack_command(args)  # first: arguments RESP cannot carry fail this call alone
        calls = self._batches.get(script)
        if calls is None:
            calls = self._batches[script] = _Calls(script, shared)
            self._issue(calls, calls)
        return calls.add(packed, len(args))

    async def close(self) -> None:
        """Drop the connection, failing what is in flight; a later command opens a new one."""
        self._drop(self._connection, ConnectionError("connection closed"))

    def _issue(self, args: tuple | _Calls, whole: tuple | _Calls | None,
               future: asyncio.Future | None = None) -> asyncio.Future | _Calls:
        """Queue ``args`` for this turn's write; ``whole``: a script's EVAL, sent on NOSCRIPT."""
        if self._connection is None:  # lost since it was opened
            raise ConnectionError("the connection to Redis was lost")
        loop = asyncio.get_running_loop()
        if isinstance(args, _Calls):  # packed with the turn's write, its callers all added by then
            packed = future = args
        else:
            # RESP, in C (half the Python loop's CPU); first: a command it refuses (TypeError, or
            # text that is not UTF-8) must fail alone, not leave a reply slot every later reply shifts into
            packed = hiredis.pack_command(args)
            if future is None:
                future = loop.create_future()
        deadline = loop.time() + self._wait
        self._pending.append((future, deadline, whole))
        if not self._outgoing:  # one write (one syscall) for every command of this turn
            loop.call_soon(self._flush, self._connection)
        self._outgoing.append(packed)
        if self._watch is None:
            self._watch = loop.call_at(deadline, self._check)
        return future

    def _flush(self, connection: _Connection) -> None:
        if connection is self._connection:  # else they failed with the connection they were for
            connection.transport.write(b"".join([part if type(part) is bytes else part.pack()
                                                 for part in self._outgoing]))
            self._outgoing = []
            self._batches.clear()

    async def _opened(self, args: tuple, whole: tuple | None) -> Any:
        await self._open()
        return await self._issue(args, whole)

    async def _opened_each(self, script: Script, shared: tuple, args: tuple) -> Any:
        await self._open()
        return await self.run_each(script, shared, *args)

    async def _open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
        await asyncio.shield(self._opening)

    async def _connect(self) -> None:
        try:
            opened = self._connections.make_connection()
            await opened.connect()
            # redis-py's handshake is done: its stream is ours from here on (and closed by us)
            self._connection = _Connection(self, opened._writer)
            opened._reader = opened._writer = None
        finally:
            self._opening = None

    def _answer(self, reply: Any) -> None:
        future, _, whole = self._pending.popleft()
        if future.done():  # its caller was cancelled
            return
        if isinstance(reply, ResponseError):
            if whole is not None and str(reply).startswith("NOSCRIPT"):
                if isinstance(whole, _Calls):
                    whole.whole = True
                self._issue(whole, None, future)
            else:
                future.set_exception(reply)
        else:
            future.set_result(reply)

    def _check(self) -> None:
        """The oldest command past its deadline: the connection is stuck; else look again then."""
        self._watch = None
        if self._pending:
            deadline = self._pending[0][1]
            if asyncio.get_running_loop().time() >= deadline:
                self._drop(self._connection, TimeoutError(f"no reply from Redis within {self._wait} s"))
            else:
                self._watch = asyncio.get_running_loop().call_at(deadline, self._check)

    def _drop(self, connection: _Connection | None, fault: Exception) -> None:
        """Close ``connection`` if it is still the current one, and fail every command in flight."""
        if connection is None or connection is not self._connection:
            return
        self._connection = None
        self.drops += 1
        connection.transport.close()
        self._outgoing = []
        self._batches = {}
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        pending, self._pending = self._pending, deque()
        for future, _, _ in pending:
            if not future.done():
                future.set_exception(fault)


class _Calls:
    """The calls of one script issued in one turn of the loop: one command, a reply per caller.

    It stands in the pipe's queues where a command and its caller's future would: packed when the
    turn's write goes out, and handed the reply (a list) to share out."""

    __slots__ = ("script", "head", "arguments", "count", "futures", "whole")

    def __init__(self, script: Script, shared: tuple) -> None:
        self.script = script
        self.head = shared
        hiredis.pack_command(shared)  # what RESP cannot carry fails here, before a reply slot is queued
        self.arguments: list[bytes] = []  # each call's arguments, packed without their count
        self.count = 0
        self.futures: list[asyncio.Future] = []
        self.whole = False  # EVAL: Redis did not know the script

    def add(self, packed: bytes, count: int) -> asyncio.Future:
        self.arguments.append(packed[packed.index(b"\r\n") + 2:])
        self.count += count
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def pack(self) -> bytes:
        script = (b"EVAL", self.script.source) if self.whole else (b"EVALSHA", self.script.sha)
        head = hiredis.pack_command((*script, 0, *self.head))
        return (b"*%d\r\n" % (3 + len(self.head) + self.count) + head[head.index(b"\r\n") + 2:]
                + b"".join(self.arguments))

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def set_result(self, replies: list) -> None:
        for future, reply in zip(self.futures, replies):
            if not future.done():
                if isinstance(reply, ResponseError):
                    future.set_exception(CallError(str(reply)))
                else:
                    future.set_result(reply)

    def set_exception(self, fault: Exception) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(fault)


class _Connection(asyncio.Protocol):
    """One connection's replies, parsed as they arrive and handed to the pipe's callers in order."""

    def __init__(self, pipe: Pipe, stream: asyncio.StreamWriter) -> None:
        self.pipe = pipe
        self.stream = stream  # kept: the stream closes its transport when it is collected
        self.transport = stream.transport
        self.parser = hiredis.Reader(replyError=ResponseError)
        self.transport.set_protocol(self)  # replies come here, not to the stream's reader

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        try:
            while (reply := self.parser.gets()) is not False:
                self.pipe._answer(reply)
        except hiredis.ProtocolError as exc:
            self.pipe._drop(self, ConnectionError(f"reading from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._drop(self, ConnectionError(f"Redis closed the connection: {exc}"))
