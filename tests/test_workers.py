"""Several workers on one port and replicas on one Redis: what they share, signals, restarts."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from adserve.catalog import Catalog, Item
from adserve.cli import DEMO_CONFIG
from adserve.events import EventLog
from adserve.model import Recs
from adserve.recs.simulate import SimulationSpec, simulate
from adserve.recs.train import train
from adserve.server.app import SERVER, AdServer, create_app
from adserve.state import RedisState

from .conftest import EXAMPLE_REQUEST
from .live import LiveServer, free_port
from .test_cli import adserve, fails

CMS = {"Authorization": "Bearer cms-token-for-workers"}
ITEM = {"url": "/articles/{}", "title": "Published on one, served by all", "section": "world",
        "published": 1_795_000_000}


async def until(condition, guard: float = 30.0) -> None:
    """Wait for ``condition()`` (async or not); fail after ``guard`` seconds, a bound, not a measure."""
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def wait_for(condition, guard: float = 60.0) -> None:
    asyncio.run(until(condition, guard))


# -- usage ------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [("--workers", "2"), ()])
def test_several_workers_without_shared_state_is_one_usage_line(tmp_path, how):
    config = tmp_path / "site"
    shutil.copytree(DEMO_CONFIG, config)
    if not how:  # the config's server.workers
        site = config / "site.yaml"
        site.write_text(site.read_text().replace("\nserver:\n", "\nserver:\n  workers: 2\n", 1))
    for demo in ((), ("--demo",)):
        fails(adserve("serve", "--config", str(config), "--port", str(free_port()), *how, *demo,
                      cwd=tmp_path, env={"ADSERVE_SECRET": "s" * 40}), 2, "server.redis_url", "2 workers")


# -- replicas on one Redis, in this process ----------------------------------------------------
@pytest.fixture
async def replicas(aiohttp_client, make_server, redis_url):
    prefix = f"t{uuid.uuid4().hex}:"
    return [await aiohttp_client(create_app(make_server(state=RedisState(redis_url, prefix), writer=name,
                                                        cms_token=CMS["Authorization"][7:])))
            for name in ("r1", "r2")]


async def test_catalog_changes_on_one_replica_are_served_by_the_other(replicas):
    one, other = replicas
    put = await one.put("/v1/items/from-the-cms", json=dict(ITEM, url="/articles/from-the-cms"), headers=CMS)
    assert put.status == 200
    # discovery adds through the same catalog call as the CMS endpoint
    one.app[SERVER].catalog.upsert(Item("discovered", "/articles/discovered", "Found on the site"))

    async def served(item_id: str) -> bool:
        return (await other.get(f"/articles/{item_id}")).status == 200
    await until(lambda: served("from-the-cms"))
    await until(lambda: served("discovered"))
    # two replicas change one item at once: both end with the same version (the feed's order)
    for n, replica in enumerate(replicas):
        await replica.put("/v1/items/contested", json=dict(ITEM, url="/articles/contested", title=f"v{n}"),
                          headers=CMS)
    await until(lambda: all("contested" in r.app[SERVER].catalog.items for r in replicas))
    await until(lambda: len({r.app[SERVER].catalog.items["contested"].title for r in replicas}) == 1)
    assert other.app[SERVER].catalog.live("from-the-cms").title == ITEM["title"]


async def test_scheduled_retrain_runs_in_one_of_several_processes(make_server, redis_url, clock, monkeypatch):
    fits = []

    async def retrain(self):
        fits.append(self.events.writer)
    monkeypatch.setattr(AdServer, "retrain", retrain)
    prefix = f"t{uuid.uuid4().hex}:"
    servers = [make_server(state=RedisState(redis_url, prefix, clock=lambda: clock().timestamp()), writer=name)
               for name in ("r1", "r2", "r3")]
    claims = await asyncio.gather(*(s.scheduled_retrain(30) for s in servers))
    assert sum(claims) == len(fits) == 1
    clock.advance(minutes=30)  # the next round: again one fit
    claims = await asyncio.gather(*(s.scheduled_retrain(30) for s in servers))
    assert sum(claims) == 1 and len(fits) == 2
    for server in servers:
        await server.state.close()


async def test_scheduled_retrain_of_one_process_runs_every_round(make_server, clock, monkeypatch):
    fits = []

    async def retrain(self):
        fits.append(1)
    monkeypatch.setattr(AdServer, "retrain", retrain)
    server = make_server()
    assert await server.scheduled_retrain(30)
    clock.advance(minutes=30)
    assert await server.scheduled_retrain(30)
    assert len(fits) == 2


# -- two worker processes on one port ------------------------------------------------------------
def worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def log_lines(server: LiveServer, text: str) -> list[str]:
    return [line for line in (server.folder / "server.log").read_text().splitlines() if text in line]


def started_workers(server: LiveServer) -> set[str]:
    """The writer tags of the workers that logged 'serving on'."""
    return {line.split("[", 1)[1].split("]", 1)[0] for line in log_lines(server, "serving on") if "[" in line}


def request(url: str, body: dict | None = None, method: str | None = None, headers: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def own_redis(redis_url):
    """The session's redis-server, in a database of these tests' own: the servers use the default keys."""
    return redis_url.rsplit("/", 1)[0] + "/3"


def on_redis(folder: Path, redis_url: str, workers: int = 2) -> LiveServer:
    """``adserve serve --workers N`` on ``redis_url``, once every worker serves."""
    server = LiveServer(folder, options=("--workers", str(workers)), env={"ADSERVE_CMS_TOKEN": CMS["Authorization"][7:]})
    site = server.folder / "config" / "site.yaml"
    site.write_text(site.read_text().replace("\nserver:\n", f"\nserver:\n  redis_url: {redis_url}\n", 1))
    server.start()
    if workers > 1:
        wait_for(lambda: len(started_workers(server)) == workers)
    return server


@pytest.fixture(scope="module")
def workers(tmp_path_factory, own_redis):
    server = on_redis(tmp_path_factory.mktemp("workers"), own_redis)
    yield server
    server.stop()
    assert not worker_pids(server.process.pid)


def test_each_worker_answers_and_writes_its_own_log(workers):
    body = copy.deepcopy(EXAMPLE_REQUEST)
    for _ in range(24):  # each on a new connection: the kernel spreads them over both workers
        assert request(workers.url + "/v1/slots", body)[0] == 200
    writers = {path.name.split(".")[1] for path in (workers.folder / "var" / "events").glob("events-*.jsonl")}
    assert writers == started_workers(workers) and len(writers) == 2
    assert all(writer.endswith(("-w1", "-w2")) for writer in writers)


def test_an_upsert_on_one_worker_is_served_by_every_worker(workers):
    item_id = f"a{uuid.uuid4().hex[:8]}"
    assert request(f"{workers.url}/v1/items/{item_id}", dict(ITEM, url=f"/articles/{item_id}"), "PUT", CMS)[0] == 200
    # 24 new connections, spread over both workers, all find it
    wait_for(lambda: all(request(f"{workers.url}/articles/{item_id}")[0] == 200 for _ in range(24)))


def test_sighup_reloads_every_worker(workers):
    before = len(log_lines(workers, "config reloaded"))
    os.kill(workers.process.pid, signal.SIGHUP)
    wait_for(lambda: len(log_lines(workers, "config reloaded")) >= before + 2)
    tags = {line.split("[", 1)[1].split("]", 1)[0] for line in log_lines(workers, "config reloaded")[before:]}
    assert tags == started_workers(workers)


def test_a_new_model_file_is_picked_up_by_every_worker(workers, tmp_path):
    catalog = Catalog(journal=tmp_path / "events" / "catalog-updates.jsonl")
    log = EventLog(tmp_path / "events", writer="simulated")
    simulate(log, SimulationSpec(users=60, days=2), catalog=catalog)
    log.close()
    train(tmp_path / "events", Recs(factors=4, iterations=2), tmp_path / "model.npz")
    before = len(log_lines(workers, "model loaded"))
    shutil.copy(tmp_path / "model.npz", workers.folder / "var" / "model.npz.tmp")
    os.replace(workers.folder / "var" / "model.npz.tmp", workers.folder / "var" / "model.npz")
    wait_for(lambda: len(log_lines(workers, "model loaded")) >= before + 2)
    tags = {line.split("[", 1)[1].split("]", 1)[0] for line in log_lines(workers, "model loaded")[before:]}
    assert tags == started_workers(workers)


def test_a_killed_worker_is_restarted_and_logged(workers):
    pids = worker_pids(workers.process.pid)
    assert len(pids) == 2
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(workers.process.pid) - {victim}) == 2)
    assert any(f"(pid {victim}) was killed by SIGKILL" in line and "restarting" in line
               for line in log_lines(workers, "worker"))
    wait_for(lambda: len(log_lines(workers, "serving on")) >= 4)  # 1 from the parent, 2 first starts, 1 restart
    assert request(workers.url + "/healthz")[0] == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_and_logs_the_requests_in_flight(tmp_path, own_redis, workers):
    server = on_redis(tmp_path, own_redis, workers)
    readers = [f"in-flight-{n}" for n in range(4)]
    connections = []
    try:
        for reader in readers:
            body = json.dumps(dict(copy.deepcopy(EXAMPLE_REQUEST), user={"id": reader})).encode()
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            conn.sendall(b"POST /v1/slots HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert conn.recv(100).startswith(b"HTTP/1.1 100 Continue")  # its handler is running
            connections.append((conn, body))
        os.kill(server.process.pid, signal.SIGTERM)
        wait_for(lambda: refused(server.port))  # every worker has stopped accepting
        for conn, body in connections:
            conn.sendall(body)
        for conn, _ in connections:
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert server.process.wait(timeout=60) == 0
    finally:
        for conn, _ in connections:
            conn.close()
        server.stop()
    logged = [json.loads(line) for path in (tmp_path / "var" / "events").glob("events-*.jsonl")
              for line in path.read_text().splitlines()]
    assert sorted(e["user"] for e in logged if e["type"] == "decision") == readers


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False
