"""One worker against two on Redis state, with the bare handler as the baseline, over loopback with wrk.

The traffic is bench_slots' light page (one 300x250 and a widget of 6, a reader and an article
context per request) against its world (1,000 campaigns, 100k articles, a trained model); caps
and budgets live in one redis-server, as they must with several workers. The three servers run
side by side and are measured in turn, so each round sees the same machine. Besides throughput
and latency, the CPU time each process spent per answered request (wrk, Redis, the adserve
processes; from /proc and the children's rusage) says where the cores went: on a 2-core machine
wrk and Redis take their share, and two workers can only use what is left.

    python benchmarks/bench_workers.py                  # 3 rounds of 10 s
    python benchmarks/bench_workers.py --repeats 1 --seconds 2 --campaigns 50 --items 2000  # a check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

from bench_slots import LUA, PAGE_REQUEST, PAGES, sample_answer
from common import OUT, BareServer, LiveServer, free_port, median_spread, replace_section, wrk
from world import build

from tests.conftest import start_redis

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes so far (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_pids(server: LiveServer) -> list[int]:
    """The adserve processes: the server, or the parent and its workers."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def started(server: LiveServer, workers: int, guard: float = 300) -> LiveServer:
    """``server`` once each of its workers logged that it serves (the first answer needs only one)."""
    deadline = time.monotonic() + guard
    while sum("serving on" in line and "-w" in line
              for line in (server.folder / "server.log").read_text().splitlines()) < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(f"{workers} workers did not start: see {server.folder / 'server.log'}")
        time.sleep(0.2)
    return server


def measure(url: str, script: Path, pids: list[int], redis_pid: int, connections: int, seconds: int) -> dict:
    """One bounded wrk run, and the CPU seconds per answered request of wrk, Redis and ``pids``."""
    before = (children_cpu(), cpu_seconds([redis_pid]), cpu_seconds(pids))
    load = wrk(url, script, connections, seconds)
    after = (children_cpu(), cpu_seconds([redis_pid]), cpu_seconds(pids))
    requests = max(1.0, load.rps * seconds)
    wrk_ms, redis_ms, server_ms = ((a - b) * 1000 / requests for a, b in zip(after, before))
    return {"load": load, "wrk": wrk_ms, "redis": redis_ms, "server": server_ms}


def run(repeats: int = 3, seconds: int = 10, connections: int = 32, campaigns: int = 1000,
        items: int = 100_000) -> str:
    folder = OUT / f"world-{campaigns}-{items}"
    config = build(folder, campaigns=campaigns, items=items)
    redis_port = free_port()
    redis = start_redis(redis_port, OUT)
    site = config / "site.yaml"  # written afresh by build()
    site.write_text(site.read_text().replace("\nserver:\n", f"\nserver:\n  redis_url: redis://127.0.0.1:{redis_port}/0\n", 1))
    page = {**PAGE_REQUEST, "slots": PAGES["light"][0]}
    script = OUT / "slots-light.lua"
    script.write_text(LUA % json.dumps(page))
    runs: dict[str, list[dict]] = {"bare handler": [], "1 worker": [], "2 workers": []}
    servers = [LiveServer(folder, options=("--workers", str(n))) for n in (1, 2)]
    try:
        for n, server in enumerate(servers, 1):
            server.start(timeout=300)
            if n > 1:
                started(server, n)
        answer = sample_answer(servers[0].url, page)
        with BareServer(answer) as bare:
            targets = {"bare handler": (bare.url, [bare.process.pid]),
                       "1 worker": (servers[0].url, server_pids(servers[0])),
                       "2 workers": (servers[1].url, server_pids(servers[1]))}
            for url, _ in targets.values():
                wrk(url + "/v1/slots", script, connections, 2)  # warm-up
            for _ in range(repeats):  # alternating: each round sees the same machine
                for name, (url, pids) in targets.items():
                    runs[name].append(measure(url + "/v1/slots", script, pids, redis.pid, connections, seconds))
    finally:
        for server in servers:
            server.stop()
        redis.terminate()
        redis.wait(timeout=10)
    return report(runs, repeats, seconds, connections, campaigns, items)


def report(runs: dict[str, list[dict]], repeats: int, seconds: int, connections: int, campaigns: int,
           items: int) -> str:
    def cell(values: list[float], digits: int) -> str:
        return median_spread(values, digits)

    rows = []
    for name, got in runs.items():
        loads = [g["load"] for g in got]
        total = [g["wrk"] + g["redis"] + g["server"] for g in got]
        rows.append(f"| {name} | {cell([x.rps for x in loads], 0)} | {cell([x.p50_ms for x in loads], 2)} "
                    f"| {cell([x.p99_ms for x in loads], 2)} | {sum(x.non_2xx for x in loads)} "
                    f"| {cell([g['wrk'] for g in got], 3)} | {cell([g['redis'] for g in got], 3)} "
                    f"| {cell([g['server'] for g in got], 3)} | {cell(total, 3)} |")
    two_over_one = [b["load"].rps / a["load"].rps for a, b in zip(runs["1 worker"], runs["2 workers"])]
    return "\n".join([
        f"### Workers: one vs two on Redis state, light page ({campaigns:,} campaigns, {items:,} articles)",
        f"wrk, 1 thread, {connections} connections, {seconds} s x {repeats} rounds, the three servers "
        f"measured in turn; all adserve processes share one redis-server on loopback. CPU columns: "
        f"milliseconds of CPU per answered request, by process, from /proc (the adserve column counts "
        f"the parent and its workers).", "",
        "| server | requests/s | p50 ms | p99 ms | non-2xx | wrk CPU ms | Redis CPU ms | adserve CPU ms "
        "| total CPU ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"**2 workers / 1 worker throughput: {median_spread(two_over_one, 2)}** (target >= 1.5; p99 "
        f"target <= 10 ms at {connections} connections).", "", bounds(runs, connections), ""])


def bounds(runs: dict[str, list[dict]], connections: int) -> str:
    """What the measured CPU per request allows on this machine's cores, whatever the scheduling.

    One worker runs on one core: at most 1/w requests/s. Every process's CPU per request must fit
    in the cores: at most cores/(adserve + wrk + Redis). By Little's law the mean latency at a
    fixed number of connections is connections/throughput, and p99 is at least the mean.
    """
    def median(name: str, *columns: str) -> float:
        return statistics.median(sum(g[c] for c in columns) for g in runs[name])

    cores = os.cpu_count()
    p99_over_p50 = statistics.median(g["load"].p99_ms / g["load"].p50_ms for g in runs["2 workers"])
    w, w2 = median("1 worker", "server"), median("2 workers", "server")
    o1, o2 = median("1 worker", "wrk", "redis"), median("2 workers", "wrk", "redis")
    one = min(1 / w, cores / (w + o1)) * 1000
    two, same = cores / (w2 + o2) * 1000, cores / (w + o2) * 1000  # same: had a worker cost w with two
    return (f"Bounds from the medians (ms of CPU per request: w = {w:.3f} adserve with one worker, "
            f"w2 = {w2:.3f} with two; o1 = {o1:.3f}, o = {o2:.3f} wrk + Redis with one, two; {cores} cores): "
            f"one worker <= min(1/w, {cores}/(w+o1)) = {one:,.0f} requests/s; two <= {cores}/(w2+o) = {two:,.0f} "
            f"(<= {cores}/(w+o) = {same:,.0f} if a worker cost with two what it costs alone), so the "
            f"ratio, one worker at its bound, <= {two / one:.2f} ({same / one:.2f}); 1.5x needs w2 + o <= {cores / 1.5:.2f} w = "
            f"{cores * w / 1.5:.3f} ms. "
            f"Mean latency = {connections}/throughput (Little's law) and p99 >= mean: at the two-worker "
            f"bound p99 >= {connections / two * 1000:.1f} ms ({connections / same * 1000:.1f} ms), and "
            f"p99 <= 10 ms needs at least {connections * 100:,} requests/s, i.e. w2 + o <= "
            f"{cores * 10 / connections:.3f} ms even were p99 the mean (here p99 / p50 = {p99_over_p50:.1f}).")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = parser.parse_args()
    section = run(args.repeats, args.seconds, args.connections, args.campaigns, args.items)
    print(section)
    if args.write:
        replace_section(section)


if __name__ == "__main__":
    main()
