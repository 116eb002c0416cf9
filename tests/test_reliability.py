"""Trying to break the server: schema fuzzing, mangled YAML, kill -9 under load, abuse, overload."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adserve.config import load_config
from adserve.events import ReadReport, log_files, read_events

from .conftest import EXAMPLE_REQUEST, NOON_ISH, REPO, require
from .live import LiveServer
from .test_server import edit, local, post_slots
from adserve.server.app import create_app


@pytest.fixture
def live(tmp_path):
    server = LiveServer(tmp_path).start()
    yield server
    server.stop()


def test_schemathesis_finds_no_server_errors(live):
    """Every operation of the served OpenAPI spec, fuzzed: no 5xx, documented codes and bodies."""
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_schema_conformance,negative_data_rejection")
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{live.url}/openapi.json", "--checks", checks,
         "--max-examples", "40", "--workers", "1", "--seed", "1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "unexpected error" not in (live.folder / "server.log").read_text()


# -- mangled campaign YAML -----------------------------------------------------------------------
DEMO_FILE = REPO / "config" / "campaigns" / "display.yaml"
odd_values = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats()
              | st.text(max_size=30) | st.just("300x250") | st.just("2026-13-45T99:00:00Z")
              | st.recursive(st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                             | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=30))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutated_yaml(draw) -> str:
    document = yaml.safe_load(DEMO_FILE.read_text())
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "rename", "nest"]))
        if action == "replace":
            parent[path[-1]] = draw(odd_values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = parent.pop(path[-1])
        else:
            parent[path[-1]] = {"deep": [[[[[[[[parent[path[-1]]]]]]]]]]}
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    if draw(st.booleans()):  # raw damage too: a cut, or inserted bytes
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "\t", ": [", "&x *x", "\u202e", "\x00", "}}"])) \
            + text[at + draw(st.integers(0, 3)):]
    return text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated_yaml())
def test_check_never_crashes_and_always_names_the_file(workdir, text):
    path = workdir / "config" / "campaigns" / "display.yaml"
    path.write_text(text)
    result = load_config(workdir / "config", now=NOON_ISH)
    for problem in result.errors + result.warnings:
        assert problem.file and Path(problem.file).name in {p.name for p in (workdir / "config").rglob("*.yaml")}
        assert problem.message
    assert result.ok or result.errors


async def test_server_keeps_last_good_config_through_mangled_files(client, workdir):
    from adserve.server.app import SERVER

    server = client.server.app[SERVER]
    good = server.runtime
    path = workdir / "config" / "campaigns" / "display.yaml"
    for n, text in enumerate([":\n  - [", "campaigns: 7", "campaigns:\n  - id: 12174\n", "\x00\x01",
                              DEMO_FILE.read_text().replace("size: 300x250", "size: {a: [1, 2]}"),
                              "a: &a [*a]", "campaigns: " + "[" * 5000 + "]" * 5000]):
        path.write_text(text)
        await server.reload_config()
        assert server.runtime is good
        assert server.status["config"]["errors"]
        reader = {**EXAMPLE_REQUEST, "user": {"id": f"reader-{n}"}}  # each answer holds a share of the cap
        assert (await post_slots(client, reader))["s1"]["campaign_id"] == 12174


# -- kill -9 under load --------------------------------------------------------------------------
ACKED_BEFORE_KILL = 200  # hits acknowledged before the kill, however fast the machine


async def _traffic(url: str, acked: list[tuple[str, str]], enough: asyncio.Event, worker: int) -> None:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    async with aiohttp.ClientSession() as session:
        n = 0
        while True:
            n += 1
            body["user"] = {"id": f"load-{worker}-{n}"}
            try:
                async with session.post(url + "/v1/slots", json=body) as response:
                    slots = (await response.json())["slots"]
                for fill in (slots["s1"], slots["s2"]):
                    for kind in ("impression", "click"):
                        link = fill[f"{kind}_url"]
                        async with session.get(url + local(link), allow_redirects=False) as hit:
                            if hit.status in (200, 302):
                                acked.append((kind, link.split("t=")[1]))
                                if len(acked) >= ACKED_BEFORE_KILL:
                                    enough.set()
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError):
                return  # the server is gone


async def test_acknowledged_events_survive_kill_minus_nine(tmp_path):
    server = LiveServer(tmp_path).start()
    acked: list[tuple[str, str]] = []
    enough = asyncio.Event()
    workers = [asyncio.create_task(_traffic(server.url, acked, enough, w)) for w in range(8)]
    await asyncio.wait_for(enough.wait(), timeout=300)  # a guard against a hang, not a speed limit
    server.kill()  # mid-load (the workers are still sending): no shutdown hook, no final fsync
    await asyncio.gather(*workers)
    assert len(acked) >= ACKED_BEFORE_KILL
    server.start()  # restarts on the same log, torn line or not
    server.stop()
    report = ReadReport()
    logged = Counter((e["type"], e["token"]) for e in read_events(log_files(tmp_path / "var" / "events"), report)
                     if e["type"] in ("impression", "click"))
    from adserve.tokens import Signer

    signer = Signer(b"live-test-secret-0123456789abcdef", 3600)
    hits = [(kind, signer.verify(token)["n"]) for kind, token in acked]
    missing = [hit for hit in hits if logged[hit] == 0]
    assert missing == []
    assert all(logged[hit] == 1 for hit in hits)
    assert len(report.skipped) <= 1  # at most the one line torn by the kill


# -- abuse ---------------------------------------------------------------------------------------
async def test_replayed_and_expired_tokens(client, workdir):
    from adserve.server.app import SERVER

    fill = (await post_slots(client, EXAMPLE_REQUEST))["s1"]
    for _ in range(3):
        assert (await client.get(local(fill["click_url"]), allow_redirects=False)).status == 302
    clicks = [e for e in read_events(log_files(workdir / "var" / "events")) if e["type"] == "click"]
    assert [c["counted"] for c in clicks] == [True, False, False]
    signer = client.server.app[SERVER].signer
    signer._clock = lambda: time.time() + signer.ttl + 5
    expired = await client.get(local(fill["impression_url"]))
    assert expired.status == 410 and (await expired.json())["error"] == "bad_token"


async def test_oversized_and_slow_requests(live):
    async with aiohttp.ClientSession() as session:
        async with session.post(live.url + "/v1/slots", data=b"{" + b" " * 200_000 + b"}",
                                headers={"Content-Type": "application/json"}) as response:
            assert response.status == 413
    # slowloris: many connections dribbling headers must not starve real readers
    writers = []
    for _ in range(200):
        _, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(b"POST /v1/slots HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        writers.append(writer)
    guard = aiohttp.ClientTimeout(total=60)  # a hang guard: starving would mean no answer at all
    async with aiohttp.ClientSession(timeout=guard) as session:
        for _ in range(3):  # served while all 200 slow connections are still held open
            async with session.post(live.url + "/v1/slots", json=EXAMPLE_REQUEST) as response:
                assert response.status == 200 and (await response.json())["slots"]["s1"]["fill"]
    assert not any(writer.is_closing() for writer in writers)
    for writer in writers:
        writer.close()


async def test_header_injection_through_ids_is_refused(client):
    for user in ("a\r\nSet-Cookie: x=1", "a\nb", "a b", "x" * 200):
        body = copy.deepcopy(EXAMPLE_REQUEST)
        body["user"] = {"id": user}
        response = await client.post("/v1/slots", json=body)
        assert response.status == 400 and "Set-Cookie" not in response.headers


def test_landing_urls_with_whitespace_are_config_errors(workdir):
    edit(workdir, "campaigns/house.yaml", "https://capitolledger.example/offer",
         "'https://capitolledger.example/offer\\r\\nSet-Cookie: x=1'")
    result = load_config(workdir / "config", now=NOON_ISH)
    assert any(e.path.endswith("landing_url") for e in result.errors)


# -- overload ------------------------------------------------------------------------------------
def _server_settings(folder: Path, **settings) -> None:
    lines = "".join(f"  {name}: {value}\n" for name, value in settings.items())
    edit(folder, "site.yaml", "  max_slots: 20\n", "  max_slots: 20\n" + lines)


async def test_slot_requests_past_max_pending_are_refused_at_once_then_admitted(
        aiohttp_client, make_server, workdir):
    """Handlers held at a gate: exactly max_pending are admitted, the rest get 503 at once."""
    from adserve.server.app import SERVER

    _server_settings(workdir, max_pending=4)
    client = await aiohttp_client(create_app(make_server()))
    server = client.server.app[SERVER]
    gate = asyncio.Event()
    serve = server.slots.serve

    async def held(*args):
        await gate.wait()
        return await serve(*args)

    server.slots.serve = held
    admitted = [asyncio.create_task(client.post("/v1/slots", json=EXAMPLE_REQUEST)) for _ in range(4)]
    while server.in_flight < 4:
        await asyncio.sleep(0.001)
    refused = [await client.post("/v1/slots", json=EXAMPLE_REQUEST) for _ in range(3)]
    assert [r.status for r in refused] == [503] * 3
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    assert {(await r.json())["error"] for r in refused} == {"overloaded"}
    assert (await client.get("/healthz")).status == 200  # health and tracking are never shed
    gate.set()
    assert [(await task).status for task in admitted] == [200] * 4
    assert server.in_flight == 0
    assert (await client.post("/v1/slots", json=EXAMPLE_REQUEST)).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert re.search(r'adserve_shed_total\{reason="pending"\} 3\.0', metrics)


def _wrk(folder: Path, url: str, connections: int, seconds: int = 3) -> dict:
    script = folder / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(json.dumps(EXAMPLE_REQUEST))}\n")
    run = subprocess.run([require("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
                          "-s", str(script),
                          url + "/v1/slots"], capture_output=True, text=True, timeout=120)
    total = int(re.search(r"(\d+) requests in", run.stdout).group(1))
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    return {"total": total, "refused": int(refused.group(1)) if refused else 0, "out": run.stdout}


def test_overload_sheds_the_requests_that_waited_and_keeps_serving(tmp_path):
    """2,000 connections at once: each pass of the event loop holds ~2,000 requests, several
    times what any machine answers in max_queue_ms (100 ms at the default). The ones that waited
    too long are refused, the others served; no connection is dropped; it recovers at once."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    with LiveServer(tmp_path) as server:
        run = _wrk(tmp_path, server.url, connections=2000)
        served = run["total"] - run["refused"]
        assert run["refused"] > 0 and served > 0, run["out"]
        assert "Socket errors" not in run["out"], run["out"]  # answered or refused, never dropped
        for _ in range(5):
            request = urllib.request.Request(server.url + "/v1/slots", data=json.dumps(EXAMPLE_REQUEST).encode(),
                                             headers={"Content-Type": "application/json"})
            assert urllib.request.urlopen(request, timeout=30).status == 200
        metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    shed = re.search(r'adserve_shed_total\{reason="waited"\} (\S+)', metrics)
    assert shed and float(shed.group(1)) >= run["refused"]  # wrk stops counting with answers in flight
    assert "unexpected error" not in (tmp_path / "server.log").read_text()


async def _connect(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


async def test_connections_past_the_cap_are_refused_at_once(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    _server_settings(tmp_path, max_connections=20)
    with LiveServer(tmp_path) as server:
        held = [await _connect(server.port) for _ in range(20)]
        for _ in range(3):
            reader, writer = await _connect(server.port)
            answer = await asyncio.wait_for(reader.read(), 10)  # the whole answer, then EOF
            assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
            writer.close()
        for _, writer in held:
            writer.close()
        while True:  # the server sees the held connections close, then admits again
            try:
                request = urllib.request.Request(server.url + "/v1/slots",
                                                 data=json.dumps(EXAMPLE_REQUEST).encode(),
                                                 headers={"Content-Type": "application/json"})
                assert urllib.request.urlopen(request, timeout=10).status == 200
                break
            except urllib.error.HTTPError as refused:
                assert refused.code == 503
            except urllib.error.URLError:
                pass  # refused while still sending: the 503 closed the connection first
            await asyncio.sleep(0.05)
        metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    assert re.search(r'adserve_shed_total\{reason="connections"\} ([1-9]\d*)', metrics)


async def test_a_request_head_or_body_that_never_completes_is_cut_off(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    _server_settings(tmp_path, head_timeout_seconds=0.5, body_timeout_seconds=0.5)
    with LiveServer(tmp_path) as server:
        slow_head = await _connect(server.port)
        slow_head[1].write(b"POST /v1/slots HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow_body = await _connect(server.port)
        slow_body[1].write(b"POST /v1/slots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{")
        # generous bounds: they only keep a broken server from hanging the suite
        assert await asyncio.wait_for(slow_head[0].read(), 30) == b""  # closed without an answer
        answer = await asyncio.wait_for(slow_body[0].read(), 30)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        for _, writer in (slow_head, slow_body):
            writer.close()


async def test_a_connection_counts_as_answering_from_its_handler_until_its_answer_is_written(aiohttp_client):
    """A stop (``listener.drain``) closes idle connections at once and waits for the others; what
    "answering" means is aiohttp's own flag, so this pins it: on while the body is still being
    read, off once the answer went out."""
    from aiohttp import web

    from adserve.server import listener

    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(listener.answering(request.protocol))
        await request.read()
        seen.append(listener.answering(request.protocol))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handler)
    client = await aiohttp_client(app)
    assert (await client.post("/", data=b"x" * 100)).status == 200
    assert seen == [True, True]
    connections = client.server.runner.server.connections
    assert connections and not any(listener.answering(connection) for connection in connections)
