"""Event-loop stalls of the live server under wrk: which loop steps took long, in CPU or in GC.

    python benchmarks/stall_probe.py [--code PATH] [--page heavy|light] [--runs 7] [--seconds 10]

Runs ``adserve serve`` on the bench_slots world (``--code``: another checkout, e.g. an export of
main, to compare) with every event-loop step timed, in wall time and in the loop thread's CPU
time, and every collection of the garbage collector timed; then wrk (32 connections) several
times, long enough for a counter checkpoint (every minute) to fall inside. Wall time on a shared
machine is mostly other processes; CPU time per step is the server's own stall, whatever the load.
See PROFILE.md ("Sixth round: tail latency").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from bench_slots import LUA, PAGE_REQUEST, PAGES
from common import OUT, free_port, wait_until_up

SLOW_CPU = 0.005  # a step of the loop using more CPU than this is reported
#: Runs inside the server: times each loop step and each collection, writes them at exit.
PROBE = """
import asyncio.events, atexit, gc, json, os, sys, time
steps, collections, began, in_gc = [], [], time.perf_counter(), [0.0]
def timed_gc(phase, info, mark=[0.0, 0.0]):
    if phase == "start":
        mark[:] = time.perf_counter(), time.thread_time()
    else:
        wall, cpu = time.perf_counter() - mark[0], time.thread_time() - mark[1]
        in_gc[0] += wall
        collections.append((round(mark[0] - began, 2), info["generation"], round(wall * 1e3, 1), round(cpu * 1e3, 1)))
gc.callbacks.append(timed_gc)
run = asyncio.events.Handle._run
def timed_run(self):
    in_gc[0], wall, cpu = 0.0, time.perf_counter(), time.thread_time()
    run(self)
    cpu = time.thread_time() - cpu
    if cpu > %(slow)r:
        owner = getattr(self._callback, "__self__", None)
        name = owner.get_coro().__qualname__ if isinstance(owner, asyncio.Task) else repr(self._callback)[:80]
        steps.append((round(wall - began, 2), name, round((time.perf_counter() - wall) * 1e3, 1), round(cpu * 1e3, 1), round(in_gc[0] * 1e3, 1)))
asyncio.events.Handle._run = timed_run
atexit.register(lambda: open(os.environ["STALLS_OUT"], "w").write(json.dumps({"steps": steps, "collections": collections})))
from adserve.cli import main
sys.exit(main(sys.argv[1:]))
"""
DONE = '\ndone = function(s, latency, r)\n  io.write(string.format("P999 %.0f MAX %.0f\\n", latency:percentile(99.9), latency.max))\nend\n'


def wrk(url: str, script: Path, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p50, p99 = (float(v) * unit[u] for v, u in (re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
                                                   for p in (50, 99)))
    p999, most = (float(v) / 1000 for v in re.search(r"P999 (\d+) MAX (\d+)", out).groups())
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": p50, "p99": p99,
            "p99.9": p999, "max": most}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--page", default="heavy", choices=PAGES)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    folder, port = OUT / "world-1000", free_port()
    probe, stalls, script = OUT / "stall_probe_server.py", OUT / "stalls.json", OUT / f"stalls-{args.page}.lua"
    probe.write_text(PROBE % {"slow": SLOW_CPU})
    script.write_text(LUA % json.dumps({**PAGE_REQUEST, "slots": PAGES[args.page][0]}) + DONE)
    env = {**os.environ, "ADSERVE_SECRET": "live-test-secret-0123456789abcdef", "PYTHONPATH": args.code,
           "STALLS_OUT": str(stalls)}
    with open(folder / "server.log", "ab") as log:
        server = subprocess.Popen([sys.executable, str(probe), "serve", "--config", "config", "--port", str(port)],
                                  cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz", server, 120)
    wrk(url + "/v1/slots", script, 3)  # warm-up
    for _ in range(args.runs):
        load = wrk(url + "/v1/slots", script, args.seconds)
        print(" ".join(f"{key} {value:.1f}" for key, value in load.items()), flush=True)
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    found = json.loads(stalls.read_text())
    print(f"loop steps over {SLOW_CPU * 1e3:.0f} ms of CPU (s since start, step, wall ms, CPU ms, GC ms "
          "within; the first is start-up):")
    for step in found["steps"]:
        print("  ", step)
    print("full collections (at s, generation, wall ms, CPU ms):",
          [c for c in found["collections"] if c[1] == 2])


if __name__ == "__main__":
    main()
