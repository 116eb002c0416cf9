"""Does a live server's cost per page grow with uptime? bench_slots' load for minutes, in pairs.

    python benchmarks/bench_uptime.py [--pairs 40] [--seconds 5] [--page light] [--profile]

Under wrk no pixel ever arrives, so every reserved ad stays open for ``server.reservation_seconds``
(300 by default) and the embedded store's open reservations grow for five minutes; half the
readers are new each request, so their cap counters grow all day. This runs one server (on the
bench_slots world as it is, not rebuilt) for ``pairs`` x (a wrk run of adserve, one of the bare
handler, which goes first alternating) and prints, per pair: the server's CPU per request beside
the bare handler's (the machine's drift shows in both), their ratio, and what the server holds,
read by a probe loaded beside the unchanged server (``sitecustomize``): the store's keys, open
reservations and their expiry and release lists, the collector's collections per generation and
the CPU they took, the frozen objects, and RSS. ``--profile``: py-spy of the server before the
first and the last pair (an extra run each, not in the rows). What it showed: PROFILE.md, "Ninth
round: measuring under wrk, and uptime".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench_slots import LUA, PAGE_REQUEST, PAGES, Readers, measured_run, sample_answer
from common import OUT, ROOT, BareServer, LiveServer, rss_mib
from profile_slots import record, summary

#: Loaded as ``sitecustomize`` by the server: every 0.2 s, what it holds, into UPTIME_PROBE_OUT.
PROBE = '''
import gc, json, os, threading, time
from adserve.state import memory

stores, gc_cpu, began = [], [0.0, 0.0, 0.0], [0.0]


def timed(phase, info):
    if phase == "start":
        began[0] = time.thread_time()
    else:
        gc_cpu[info["generation"]] += time.thread_time() - began[0]


def recording(self, *args, init=memory.MemoryState.__init__, **kwargs):
    init(self, *args, **kwargs)
    stores.append(self)


def held():
    store = stores[-1]
    return {"keys": len(store._values), "reserved": len(store._reserved),
            "expiring": sum(map(len, list(store._expiring.values()))),
            "releasing": sum(map(len, list(store._releasing.values()))),
            "keys_tracked": gc.is_tracked(store._values), "reserved_tracked": gc.is_tracked(store._reserved)}


def report(path=os.environ["UPTIME_PROBE_OUT"]):
    while True:
        time.sleep(0.2)
        state = {"collections": [g["collections"] for g in gc.get_stats()], "gc_cpu": gc_cpu,
                 "frozen": gc.get_freeze_count(), **(held() if stores else {})}
        with open(path + ".new", "w") as out:
            out.write(json.dumps(state))
        os.replace(path + ".new", path)


gc.callbacks.append(timed)
memory.MemoryState.__init__ = recording
threading.Thread(target=report, daemon=True).start()
'''


def probed() -> dict:
    time.sleep(0.5)  # the probe's next report, after the run
    return json.loads((OUT / "uptime-probe.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--page", default="light", choices=PAGES)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    probe = OUT / "uptime-probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "sitecustomize.py").write_text(PROBE)
    page = {**PAGE_REQUEST, "slots": PAGES[args.page][0]}
    script = OUT / f"uptime-{args.page}.lua"
    script.write_text(LUA % json.dumps(page))
    readers = Readers()
    env = {"PYTHONPATH": f"{probe}:{ROOT.parent}", "UPTIME_PROBE_OUT": str(OUT / "uptime-probe.json")}
    with LiveServer(OUT / "world-1000", env=env) as server, BareServer(sample_answer(server.url, page)) as bare:
        ours, theirs = (server.url, server.process.pid), (bare.url, bare.process.pid)
        started, rows = time.monotonic(), []
        print("pair | s since start | adserve µs/req | bare µs/req | bare/adserve CPU | adserve rps | p99 ms "
              "| keys | open reservations | expiring list | releasing list | gc CPU µs/req (gen 0, 1, 2) "
              "| collections (0, 1, 2) | full collection ms | frozen | RSS MiB", flush=True)
        before = probed()
        for n in range(args.pairs):
            if args.profile and n in (0, args.pairs - 1):
                record(server.url, server.process.pid, script, args.seconds, OUT / f"uptime-profile-{n}.txt")
                before = probed()
            order = (ours, theirs) if n % 2 == 0 else (theirs, ours)
            got = {url: measured_run(url, pid, script, 32, args.seconds, readers()) for url, pid in order}
            mine, base = got[server.url], got[bare.url]
            after = probed()
            gc_us = [(b - a) * 1e6 / mine.load.requests for a, b in zip(before["gc_cpu"], after["gc_cpu"])]
            collections = [b - a for a, b in zip(before["collections"], after["collections"])]
            full = f"{(after['gc_cpu'][2] - before['gc_cpu'][2]) * 1e3 / collections[2]:.1f}" if collections[2] else "-"
            rows.append((mine.server_us, base.server_us))
            print(f"{n} | {(time.monotonic() - started):.0f} | {mine.server_us:.0f} | {base.server_us:.0f} "
                  f"| {base.server_us / mine.server_us:.3f} | {mine.load.rps:.0f} | {mine.load.p99_ms:.1f} "
                  f"| {after.get('keys')} | {after.get('reserved')} | {after.get('expiring')} "
                  f"| {after.get('releasing')} | {', '.join(f'{g:.1f}' for g in gc_us)} "
                  f"| {', '.join(map(str, collections))} | {full} | {after['frozen']} | {rss_mib(server.process.pid):.0f}",
                  flush=True)
            before = after
    fifth = max(len(rows) // 5, 1)
    for label, part in (("first fifth", rows[:fifth]), ("last fifth", rows[-fifth:])):
        print(f"{label}: adserve {statistics.median(r[0] for r in part):.0f} µs/req, bare "
              f"{statistics.median(r[1] for r in part):.0f}, bare/adserve "
              f"{statistics.median(r[1] / r[0] for r in part):.3f}")
    if args.profile:
        for n in (0, args.pairs - 1):
            print(f"\npy-spy before pair {n}:\n" + summary(OUT / f"uptime-profile-{n}.txt", 30))


if __name__ == "__main__":
    main()
