"""Memory: the RSS of a loaded server, and whether it stays flat under a long soak.

The server holds the 1,000-campaign book, the 100,000-article catalog and a trained model. The
soak is the slot-fill load of bench_slots (every request a new or returning reader, decisions
logged) at a moderate 16 connections, in one-minute wrk runs, sampling RSS after each.
"""

from __future__ import annotations

import json

from common import OUT, LiveServer, rss_mib, wrk
from world import build

from bench_slots import LUA, PAGE_REQUEST


def run(soak_minutes: int = 10) -> str:
    folder = OUT / "world-1000"
    if not (folder / "var" / "model.npz").exists():
        build(folder, campaigns=1000, items=100_000)
    script = OUT / "soak.lua"
    script.write_text(LUA % json.dumps(PAGE_REQUEST))
    with LiveServer(folder) as server:
        pid = server.process.pid
        idle = rss_mib(pid)
        wrk(server.url + "/v1/slots", script, 16, 20)  # warm: caches, allocator arenas
        samples = [rss_mib(pid)]
        served = 0
        for _ in range(soak_minutes):
            load = wrk(server.url + "/v1/slots", script, 16, 60)
            served += int(load.rps * 60)
            samples.append(rss_mib(pid))
    growth = samples[-1] - samples[0]
    return "\n".join([
        "### Memory", "",
        f"RSS of the server with 1,000 campaigns, a 100,000-article catalog and a trained model, "
        f"idle after start: **{idle:.0f} MiB**.", "",
        f"Soak: {soak_minutes} minutes of slot requests at 16 connections (about {served:,} requests), "
        "RSS after warm-up and after each minute (MiB):", "",
        " -> ".join(f"{s:.0f}" for s in samples), "",
        f"**Growth over the soak: {growth:+.1f} MiB ({growth / samples[0]:+.1%})**", ""])


if __name__ == "__main__":
    print(run())
