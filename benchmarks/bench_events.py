"""Event logging throughput, and the impression endpoint under load.

Logging: ``EventLog.append`` (one event per call, as the server writes them) against the floor of
a bare ``os.write`` of the same pre-encoded lines to an O_APPEND file. Tracking: wrk on
``GET /t/i`` with 20,000 distinct signed tokens against a bare aiohttp handler answering the same
GIF.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import orjson
from common import OUT, BareServer, LiveServer, median_spread, wrk

from adserve.events import EventLog
from adserve.server.tracking import PIXEL
from adserve.tokens import Signer
from tests.live import SECRET

TOKENS_PER_RUN = 40_000  # more than a run can use at ~7k requests/s for 3 s
EVENT = {"type": "impression", "user": "reader-42", "page": "world-0008", "slot": "side",
         "campaign": 12174, "creative": "12174-300x250", "variant": "B", "item": None, "items": None,
         "url": None, "bot": False, "counted": True, "token": "5e23ddbea108edba"}


def log_rate(n: int = 200_000) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        log = EventLog(folder)
        started = time.perf_counter()
        for _ in range(n):
            log.append(EVENT)
        log.close()
        ours = n / (time.perf_counter() - started)
        line = orjson.dumps({"ts": time.time(), **EVENT}) + b"\n"
        fd = os.open(os.path.join(folder, "raw"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        started = time.perf_counter()
        for _ in range(n):
            os.write(fd, line)
        os.fsync(fd)
        os.close(fd)
        floor = n / (time.perf_counter() - started)
    return ours, floor


def token_paths(run: int, count: int) -> list[str]:
    """``count`` impression pixel paths, each with a fresh token: no hit is a replay."""
    signer = Signer(SECRET.encode(), 86400)
    ad = {"c": 12174, "cr": "12174-300x250", "v": "A", "s": "side", "p": "world-0008",
          "l": "https://harborbank.example/"}
    return [f"/t/i?t={signer.sign({**ad, 'u': f'reader-{run}-{n}'})}" for n in range(count)]


def token_script(run: int, count: int = TOKENS_PER_RUN):
    """A wrk script walking ``count`` fresh impression tokens."""
    paths = token_paths(run, count)
    script = OUT / f"impressions-{run}.lua"
    script.write_text("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
                      "local n = 0\nrequest = function()\n  n = n + 1\n"
                      "  return wrk.format('GET', paths[(n % #paths) + 1])\nend\n")
    return script


def tracking(repeats: int, seconds: int) -> tuple[list, list]:
    folder = OUT / "tracking"
    folder.mkdir(parents=True, exist_ok=True)
    ours, bare_runs = [], []
    with LiveServer(folder) as server, BareServer(PIXEL, "image/gif") as bare:
        wrk(server.url + "/t/i", token_script(-1, 5000), 32, 1)  # warm-up on its own tokens
        for run in range(repeats):
            script = token_script(run)
            ours.append(wrk(server.url + "/t/i", script, 32, seconds))
            bare_runs.append(wrk(bare.url + "/t/i", script, 32, seconds))
    return ours, bare_runs


def run(repeats: int = 3, seconds: int = 3) -> str:
    rates = [log_rate() for _ in range(repeats)]
    ours, floor = [r[0] for r in rates], [r[1] for r in rates]
    hits, bare = tracking(repeats, seconds)
    ratio = [a.rps / b.rps for a, b in zip(hits, bare)]
    return "\n".join([
        "### Event log and tracking endpoint", "",
        "| what | events or requests/s (median, spread) | p99 ms |", "|---|---:|---:|",
        f"| `EventLog.append`, one event per call | {median_spread(ours, 0)} | |",
        f"| floor: `os.write` of the same lines | {median_spread(floor, 0)} | |",
        f"| `GET /t/i` (verify, dedup, log, count) | {median_spread([h.rps for h in hits], 0)} | "
        f"{median_spread([h.p99_ms for h in hits], 2)} |",
        f"| bare aiohttp handler, same GIF | {median_spread([b.rps for b in bare], 0)} | "
        f"{median_spread([b.p99_ms for b in bare], 2)} |", "",
        f"**append / raw write: {statistics.median(ours) / statistics.median(floor):.2f}; "
        f"impression endpoint / bare handler: {median_spread(ratio, 2)}** "
        f"(wrk, 32 connections, {seconds} s x {repeats}; every hit a distinct token)", ""])


if __name__ == "__main__":
    print(run())
