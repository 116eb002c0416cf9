"""Local-file event sink against the Redis stream sink, in one run, alternating.

What it models: the server's writes, one event per call (a decision per page, an impression per
pixel). Three measures, each on both sinks:

- ``write`` one at a time: the latency a request pays (the file sink is a ``write(2)``; the
  stream sink one XADD round trip to a loopback redis-server with ``appendonly yes``,
  ``appendfsync everysec``, the durability the README recommends);
- 32 writers at once: what a busy server sees, round trips overlapping;
- ``GET /t/i`` in-process (aiohttp test client, distinct tokens, embedded counters for both, so
  only the sink differs): what a pixel costs end to end.

In-process and alternating because wrk numbers mean little on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as client_lib
from common import free_port, median_spread

from adserve.cli import DEMO_CONFIG
from adserve.config import load_config
from adserve.events import EventLog
from adserve.events.redis_stream import StreamSink
from adserve.server.app import AdServer, create_app
from adserve.state import MemoryState
from tests.conftest import start_redis
from tests.live import SECRET

from bench_events import EVENT, token_paths  # the log benchmark's event and tokens

WRITES = 5_000
PIXELS = 1_000


async def writes_per_second(sink, n: int, writers: int) -> float:
    async def writer(count: int) -> None:
        for _ in range(count):
            await sink.write(dict(EVENT))

    started = time.perf_counter()
    await asyncio.gather(*(writer(n // writers) for _ in range(writers)))
    return n / (time.perf_counter() - started)


async def pixels_per_second(folder: Path, stream: str | None, paths: list[str]) -> float:
    from aiohttp.test_utils import TestClient, TestServer

    config = folder / "config"
    shutil.copytree(DEMO_CONFIG, config)
    site = config / "site.yaml"  # its own event folder and model, inside the run's folder
    server_settings = f"event_dir: {folder}/events\n  model_path: {folder}/model.npz\n"
    if stream:
        server_settings += f"  events: {stream}\n  redis_url: {stream}\n"
    site.write_text(site.read_text().replace("event_dir: var/events\n  model_path: var/model.npz\n",
                                             server_settings))
    server = AdServer(config, load_config(config), SECRET.encode(), state=MemoryState())
    async with TestClient(TestServer(create_app(server))) as client:
        started = time.perf_counter()
        for path in paths:
            response = await client.get(path)
            assert response.status == 200, await response.text()
        return len(paths) / (time.perf_counter() - started)


async def measure(repeats: int, folder: Path, url: str) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    paths = token_paths(0, PIXELS * repeats * 2)
    for run in range(repeats):
        for name in ("files", "stream"):  # alternating, so load on the machine hits both alike
            spool = EventLog(folder / f"{name}-{run}")
            sink = spool if name == "files" else StreamSink(url, spool, key=f"bench:{run}")
            for writers in (1, 32):
                results.setdefault(f"{name} x{writers}", []).append(
                    await writes_per_second(sink, WRITES, writers))
            await sink.aclose()
            start = (2 * run + (name == "stream")) * PIXELS
            results.setdefault(f"{name} /t/i", []).append(
                await pixels_per_second(folder / f"app-{name}-{run}", url if name == "stream" else None,
                                        paths[start:start + PIXELS]))
    return results


def run(repeats: int = 3) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        redis = start_redis(port, folder, durable=True)
        try:
            with client_lib.Redis(port=port) as client:  # the durability the README recommends
                client.config_set("appendfsync", "everysec")
            results = asyncio.run(measure(repeats, folder, f"redis://127.0.0.1:{port}/0"))
        finally:
            redis.kill()
            redis.wait(timeout=10)
    rows = ["### Event sinks: local files against a Redis stream", "",
            "| what | events or pixels/s (median, spread) | stream / files |", "|---|---:|---:|"]
    for what in ("x1", "x32", "/t/i"):
        files, stream = results[f"files {what}"], results[f"stream {what}"]
        ratio = [s / f for s, f in zip(stream, files)]
        label = {"x1": "`write`, one at a time", "x32": "`write`, 32 writers at once",
                 "/t/i": "`GET /t/i` in-process, one at a time"}[what]
        rows.append(f"| {label}: files | {median_spread(files, 0)} | |")
        rows.append(f"| {label}: stream | {median_spread(stream, 0)} | {median_spread(ratio, 2)} |")
    rows += ["", f"({WRITES} writes and {PIXELS} pixels per measure, x {repeats} rounds, alternating; "
             f"redis-server {_redis_version()} on loopback, appendonly yes, appendfsync everysec; the ratio "
             "is the median of each round's own ratio)", ""]
    return "\n".join(rows)


def _redis_version() -> str:
    out = subprocess.run([shutil.which("redis-server") or "redis-server", "--version"], capture_output=True,
                         text=True).stdout
    return out.split("v=", 1)[1].split()[0] if "v=" in out else "?"


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
