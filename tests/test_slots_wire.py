"""POST /v1/slots on the wire: every kind of answer, byte for byte, as the listener serves it.

The transcript in ``fixtures/slots_wire.json`` was recorded on the request path before the slot
route's fast lane (``fastlane.py``): aiohttp's router, ``web.Response`` and its preparation. The
route must answer the same bytes (all but the Date header's value) for success, every refusal,
CORS, HTTP/1.0, Connection: close, Expect: 100-continue, chunked and pipelined requests, and
other methods and paths; and a connection must stay open (or close) as before. Record it again
(``ADSERVE_RECORD_SLOTS_WIRE=1 python -m pytest tests/test_slots_wire.py``) only on purpose: a
changed answer is what this test is for.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import orjson
import pytest

from adserve.server.app import create_app

from .conftest import EXAMPLE_REQUEST, NOON_ISH
from .test_fastlane import started, stopped

TRANSCRIPT = Path(__file__).parent / "fixtures" / "slots_wire.json"
BODY = orjson.dumps(EXAMPLE_REQUEST)
ALLOWED, OTHER = "http://127.0.0.1:8080", "https://elsewhere.example"


def post(body: bytes = BODY, *head: str, target: str = "/v1/slots", version: str = "1.1",
         length: int | None = None) -> bytes:
    lines = [f"POST {target} HTTP/{version}", "Host: adserve.test", "Content-Type: application/json",
             *head, f"Content-Length: {len(body) if length is None else length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def other(method: str, target: str = "/v1/slots", *head: str) -> bytes:
    return ("\r\n".join([f"{method} {target} HTTP/1.1", "Host: adserve.test", *head]) + "\r\n\r\n").encode()


def chunked(body: bytes) -> bytes:
    return (b"POST /v1/slots HTTP/1.1\r\nHost: adserve.test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


#: name -> (bytes sent, answers expected, whether to probe the connection afterwards with a GET)
CASES = {
    "success": (post(), 1, True),
    "success, allowed origin": (post(BODY, f"Origin: {ALLOWED}"), 1, True),
    "success, other origin": (post(BODY, f"Origin: {OTHER}"), 1, True),
    "success, Connection: close": (post(BODY, "Connection: close"), 1, True),
    "success, HTTP/1.0": (post(version="1.0"), 1, True),
    "success, HTTP/1.0 keep-alive": (post(BODY, "Connection: keep-alive", version="1.0"), 1, True),
    "success, query string": (post(target="/v1/slots?x=1"), 1, True),
    "success, percent-encoded path": (post(target="/v1/slot%73"), 1, True),
    "success, absolute-form target": (post(target="http://adserve.test/v1/slots"), 1, True),
    "POST to /v1//slots": (post(target="/v1//slots"), 1, True),
    "POST to /v1/./slots": (post(target="/v1/./slots"), 1, True),
    "POST to /v1/../v1/slots": (post(target="/v1/../v1/slots"), 1, True),
    "POST to /v1/slots%2F": (post(target="/v1/slots%2F"), 1, True),
    "POST to /v1%2Fslots": (post(target="/v1%2Fslots"), 1, True),
    "success, chunked body": (chunked(BODY), 1, True),
    "success, Expect: 100-continue": (post(BODY, "Expect: 100-continue"), 2, True),
    "pipelined: two posts in one write": (post() + post(BODY, f"Origin: {ALLOWED}"), 2, True),
    "pipelined: bad then good": (post(b"{nope") + post(), 2, True),
    "malformed JSON": (post(b"{nope"), 1, True),
    "JSON that is no request": (post(b"[1, 2]"), 1, True),
    "empty body": (post(b""), 1, True),
    "too big, with the head": (post(b"[" + b" " * 70_000 + b"]"), 1, True),
    "too big, declared": (post(b"{", length=70_000), 1, False),
    "Expect: something else": (post(BODY, "Expect: teapot"), 1, True),
    "OPTIONS preflight, allowed origin": (other("OPTIONS", "/v1/slots", f"Origin: {ALLOWED}",
                                                "Access-Control-Request-Method: POST"), 1, True),
    "OPTIONS preflight, other origin": (other("OPTIONS", "/v1/slots", f"Origin: {OTHER}"), 1, True),
    "OPTIONS without origin": (other("OPTIONS"), 1, True),
    "GET": (other("GET"), 1, True),
    "HEAD": (other("HEAD"), 1, True),
    "PUT": (other("PUT", "/v1/slots", "Content-Length: 0"), 1, True),
    "GET, allowed origin": (other("GET", "/v1/slots", f"Origin: {ALLOWED}"), 1, True),
    "POST to /v1/slots/": (post(target="/v1/slots/"), 1, True),
    "POST to /v1/slotsx": (post(target="/v1/slotsx"), 1, True),
    "POST to /V1/slots": (post(target="/V1/slots"), 1, True),
    "POST to /nowhere": (post(target="/nowhere"), 1, True),
    "healthz": (other("GET", "/healthz"), 1, True),
}
SLOW = {  # sent on a server whose body timeout is 0.2 s, or whose slot requests are all shed
    "body timeout": (post(b"{", length=100), 1, False),
    "overload": (post(), 1, True),
    "overload, allowed origin": (post(BODY, f"Origin: {ALLOWED}"), 1, True),
}
PROBE = other("GET", "/healthz")


async def read_answer(reader: asyncio.StreamReader, head_only: bool = False) -> str:
    """One answer as text, its Date header's value masked (it is the clock's); ``head_only``: the
    answer to a HEAD request, which has no body whatever its headers say."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head, re.I)
    body = b""
    if head_only or status < 200:
        pass
    elif length:
        body = await reader.readexactly(int(length.group(1)))
    elif re.search(rb"\r\nTransfer-Encoding: chunked\r\n", head, re.I):
        body = await reader.readuntil(b"\r\n0\r\n\r\n")
    return re.sub(r"\r\nDate: [^\r]*", "\r\nDate: <masked>", (head + body).decode())


async def exchange(port: int, sent: bytes, answers: int, probe: bool) -> list[str]:
    """The answers to ``sent`` on a fresh connection, then whether it still answers a GET."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        got = [await asyncio.wait_for(read_answer(reader, sent.startswith(b"HEAD ")), 30)
               for _ in range(answers)]
        if probe:
            try:
                writer.write(PROBE)
                await writer.drain()
                got.append("open" if (await asyncio.wait_for(read_answer(reader), 30)).startswith("HTTP/1.1 200")
                           else "answered otherwise")
            except (asyncio.IncompleteReadError, ConnectionError):
                got.append("closed")
        return got
    finally:
        writer.close()


async def transcript(make_server, workdir) -> dict:
    """Every case's answers from a server started as ``listener.serve`` starts it, and the request
    and slot counts that ``/metrics`` shows afterwards."""
    site = workdir / "config" / "site.yaml"
    site.write_text(site.read_text().replace("  max_body_bytes: 65536\n",
                                             "  max_body_bytes: 65536\n  body_timeout_seconds: 0.2\n"))
    server = make_server()
    server.signer._clock = lambda: NOON_ISH.timestamp()  # tokens carry their time of issue
    app = create_app(server)
    app.on_startup.clear()  # no background tasks: the answers are the point
    app.on_cleanup.clear()
    runner, sockets, url = await started(app)
    port = int(url.rsplit(":", 1)[1])
    try:
        got = {name: await exchange(port, *case) for name, case in CASES.items()}
        got["body timeout"] = await exchange(port, *SLOW["body timeout"])
        server.in_flight += 10**6  # past max_pending: every slot request is shed
        for name in ("overload", "overload, allowed origin"):
            got[name] = await exchange(port, *SLOW[name])
        server.in_flight -= 10**6
        metrics = (await exchange(port, other("GET", "/metrics"), 1, False))[0]
    finally:
        await stopped(runner, sockets)
    got["metrics"] = [line for line in metrics.split("\n")
                      if line.startswith(("adserve_requests_total", "adserve_slots_total", "adserve_shed_total"))]
    return got


@pytest.fixture
def fixed_nonces(monkeypatch):
    """Tokens' nonce prefix is random per process; fixed here so answers repeat byte for byte."""
    monkeypatch.setattr("adserve.tokens.secrets.token_hex", lambda n: "ab" * n)


async def test_slot_route_answers_the_recorded_bytes(make_server, workdir, fixed_nonces):
    got = await transcript(make_server, workdir)
    if os.environ.get("ADSERVE_RECORD_SLOTS_WIRE"):
        TRANSCRIPT.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip("recorded the transcript (ADSERVE_RECORD_SLOTS_WIRE): compare it from now on")
    recorded = json.loads(TRANSCRIPT.read_text())
    assert got.keys() == recorded.keys()
    for name, answers in recorded.items():
        assert got[name] == answers, name
