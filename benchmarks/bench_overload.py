"""Past overload: how much of its capacity the server keeps answering, and how fast it refuses.

Capacity is the light page's rate at 32 connections; then 512 and 2,000 connections send the
same traffic without pause (each answered or refused request is followed at once by the next).
What a reader cares about: answered requests per second stay a large share of capacity, and the
rest get a quick 503 rather than a long wait. wrk takes one of the two cores, so both runs share
the machine the same way.
"""

from __future__ import annotations

import json

from bench_slots import LUA, PAGE_REQUEST, PAGES
from common import OUT, LiveServer, median_spread, wrk
from world import build


def run(repeats: int = 3, seconds: int = 10) -> str:
    folder = OUT / "world-1000"
    build(folder, campaigns=1000, items=100_000)
    script = OUT / "slots-light.lua"
    script.write_text(LUA % json.dumps({**PAGE_REQUEST, "slots": PAGES["light"][0]}))
    rows = []
    with LiveServer(folder) as server:
        url = server.url + "/v1/slots"
        wrk(url, script, 32, 3)  # warm-up
        for connections in (32, 512, 2000):
            runs = [wrk(url, script, connections, seconds) for _ in range(repeats)]
            answered = [r.rps - r.non_2xx / seconds for r in runs]
            rows.append((connections, answered, runs))
    capacity = rows[0][1]
    lines = [f"| {c} | {median_spread(a, 0)} | {median_spread([x / y for x, y in zip(a, capacity)], 2)} "
             f"| {median_spread([r.non_2xx / seconds for r in runs], 0)} "
             f"| {median_spread([r.p50_ms for r in runs], 1)} |" for c, a, runs in rows]
    return "\n".join([
        "### Overload: answered share of capacity past overload (light page)",
        f"wrk, 1 thread, {seconds} s x {repeats} runs per connection count, one server worker, default "
        "`max_queue_ms` 100; capacity = answered requests/s at 32 connections.", "",
        "| connections | answered/s | share of capacity | refused (503)/s | p50 ms (all answers) |",
        "|---:|---:|---:|---:|---:|", *lines, ""])


if __name__ == "__main__":
    print(run())
