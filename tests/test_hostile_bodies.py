"""Bodies that cannot be read, on a server started as ``serve`` starts it: the client's error
(a 400, or nothing to answer), never a 500, a traceback in the log or a count of our failure.
A hostile client could otherwise fill the log and the error rate at will."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client.parser import text_string_to_metric_families

from adserve.server.app import create_app

from .test_fastlane import started, stopped

HEAD = b"POST /v1/slots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@contextlib.asynccontextmanager
async def served(server):
    app = create_app(server)
    app.on_startup.clear()  # no background tasks
    app.on_cleanup.clear()
    runner, sockets, url = await started(app)
    try:
        yield int(url.rsplit(":", 1)[1])
    finally:
        await stopped(runner, sockets)


def slot_answers(server) -> dict[str, float]:
    """/v1/slots answers counted so far, by status."""
    return {sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(server.metrics.exposition()[0].decode())
            for sample in family.samples
            if sample.name == "adserve_requests_total" and sample.labels["route"] == "/v1/slots"}


def errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_undecodable_compressed_body_is_a_400_and_the_connection_closes(make_server, caplog):
    """aiohttp decodes a gzip body as it arrives; bytes that are not gzip are the client's error.
    What follows them on the connection cannot be trusted, so the answer closes it."""
    server = make_server()
    async with served(server) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\n0123456789")
        answer = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closes
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert b"content-encoding" in body.lower() and b'"error":"bad_request"' in body
    assert slot_answers(server) == {"400": 1}
    assert errors(caplog) == []


async def test_a_client_gone_mid_body_is_not_our_failure(make_server, caplog):
    """A reader's tab closed while its body was on the way: no 500 counted, nothing logged as an
    error."""
    server = make_server()
    async with served(server) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b'Content-Length: 100\r\n\r\n{"slots"')
        await writer.drain()
        for _ in range(100):  # until the handler has started on it
            if server.in_flight:
                break
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(200):  # until the server has seen the connection end
            if slot_answers(server):
                break
            await asyncio.sleep(0.01)
    assert server.in_flight == 0
    assert slot_answers(server) == {"400": 1}
    assert errors(caplog) == []
