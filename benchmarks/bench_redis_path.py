"""What Redis state adds to a page's CPU, in another checkout's code and in this one, in the same run.

    python benchmarks/bench_redis_path.py --baseline-ref main [--views 1000 --passes 7 --pixels 0]
    python benchmarks/bench_redis_path.py --script [--views 1000 --passes 7]

Four bench_inprocess workers (each its own process: the baseline's code or this checkout's, on
the embedded store or on a redis-server of the run's own) answer bench_inprocess' light page in
alternating passes, without pixels by default, as the wrk traffic has none; once for the whole
page and once for ``Decider.decide`` alone. With ``--pixels`` a share of the pages' ad pixels
arrive after them: untimed in the workers, but their work is in the redis-server column. The
CPU a page costs on Redis minus what it costs on the embedded store, paired pass by pass, is
the Redis path's own cost in this process (Redis's CPU is not in it: its column is the
redis-server's own). Pages come one at a time, so every round trip also pays an idle loop's
wake-up, which a loaded server shares among the requests in flight.

``--script`` times the reserve script alone, inside redis-server: this checkout's requests of
``--views`` light pages (captured from its decisions) are replayed pipelined, so no client
wake-up is in it, each pass on fresh keys, whole and cut short after each of its parts, and
whole with ``BATCH`` pages a call (as a worker sends the pages of one turn of its loop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench_inprocess import ROOT, Redis, Remote, baseline_checkout
from bench_slots import PAGE_REQUEST, PAGES
from bench_workers import cpu_seconds

STATES = ("memory", "redis")
REPLAYS = 5  # copies of the captured requests a pass of --script sends
BATCH = 8  # pages a call in --script's batched row: a worker's turn under wrk carries ~3-20


def run(ref: str, views: int, passes: int, pixels: float) -> str:
    pages = {name: {**PAGE_REQUEST, "slots": slots} for name, (slots, _label) in PAGES.items()}
    redis = Redis()
    codes = {f"`{ref}`": baseline_checkout(ref), "this branch": ROOT.parent}
    remotes = {(code, state): Remote(f"redis-path-{n}-{state}", path, 4, pages, True,
                                     redis.url if state == "redis" else "")
               for n, (code, path) in enumerate(codes.items()) for state in STATES}
    rows = []
    try:
        for do in ("pass", "decide"):
            command = {"do": do, "page": "light", "views": views, "pixels": pixels}
            for remote in remotes.values():  # warm-up: contexts, counters, the connection
                remote.ask(command)
            means: dict[tuple[str, str], list[float]] = {key: [] for key in remotes}
            server: dict[str, list[float]] = {code: [] for code in codes}  # redis-server CPU µs per page
            for n in range(passes):
                for key, remote in (list(remotes.items()) if n % 2 == 0 else list(remotes.items())[::-1]):
                    before = cpu_seconds([redis.process.pid])
                    means[key].append(remote.ask(command)["mean"])
                    if key[1] == "redis":
                        server[key[0]].append((cpu_seconds([redis.process.pid]) - before) * 1e6 / views)
                    print(key, do, round(means[key][-1]), file=sys.stderr)
            part = "whole light page" if do == "pass" else "`decide` only"
            for code in codes:
                memory, on_redis = means[(code, "memory")], means[(code, "redis")]
                added = [r - m for m, r in zip(memory, on_redis)]
                rows.append(f"| {part} | {code} | {statistics.median(memory):.0f} | {statistics.median(on_redis):.0f} "
                            f"| **{statistics.median(added):.0f}** ({min(added):.0f}–{max(added):.0f}) "
                            f"| {statistics.median(server[code]):.0f} |")
    finally:
        for remote in remotes.values():
            remote.close()
        redis.stop()
    return "\n".join([
        f"### Redis path: what Redis state adds to a light page, `{ref}` and this branch",
        f"`python benchmarks/bench_redis_path.py --baseline-ref {ref} --views {views} --passes {passes} "
        f"--pixels {pixels}`: {passes} alternating passes of {views} light pages (pixels for {pixels:.0%}, "
        "untimed) per worker; CPU µs per page, "
        "medians of the passes' means; added: Redis minus memory, paired pass by pass (range); "
        "redis-server: its own CPU per page (from /proc, 10 ms ticks: use enough views).", "",
        "| timed | code | memory µs | Redis µs | added by Redis, µs | redis-server µs |",
        "|---|---|---:|---:|---:|---:|", *rows])


def script_parts(views: int, passes: int) -> str:
    """redis-server CPU per reserve script call: empty, decoding its request, then releasing what
    is due, then whole (walk, adds, reservations), on requests captured from light pages."""
    import redis as client_library

    from adserve.state import redis as state_redis
    from bench_inprocess import OUT, Worker

    requests: list[bytes] = []
    encode = state_redis._reserve_request
    state_redis._reserve_request = lambda *args: requests.append(encode(*args)) or requests[-1]
    redis = Redis()
    try:
        pages = {"light": {**PAGE_REQUEST, "slots": PAGES["light"][0]}}
        Worker(ROOT.parent, OUT / "redis-path-script", 4, pages, True, redis.url).decide_pass("light", views)
        common = state_redis._LUA_COMMON
        whole = state_redis._LUA_RESERVE
        parts = {"an empty script": ("return 1", 1),
                 "+ decoding its request": ("cjson.decode(ARGV[3]) return 1", 1),
                 "+ releasing what is due": (common + "release_due(1) cjson.decode(ARGV[3]) return 1", 1),
                 "whole (+ walk, adds, reservations)": (whole, 1),
                 f"whole, {BATCH} pages a call, per page": (whole, BATCH)}
        cpu: dict[str, list[float]] = {part: [] for part in parts}
        with client_library.Redis.from_url(redis.url) as client:
            loaded = [(part, client.script_load(source), pages) for part, (source, pages) in parts.items()]
            for n in range(passes):
                for index, (part, sha, pages) in enumerate(loaded):
                    pipe = client.pipeline(transaction=False)
                    for copy in range(REPLAYS):  # enough calls for /proc's 10 ms ticks
                        for first in range(0, len(requests), pages):
                            calls = [(time.time(), request) for request in requests[first:first + pages]]
                            pipe.evalsha(sha, 0, f"script-{index}-{n}-{copy}:", *(a for c in calls for a in c))
                    before = cpu_seconds([redis.process.pid])
                    pipe.execute()
                    cpu[part].append((cpu_seconds([redis.process.pid]) - before) * 1e6 / (REPLAYS * len(requests)))
    finally:
        state_redis._reserve_request = encode
        redis.stop()
    size = statistics.fmean(map(len, requests))
    return "\n".join([
        "### Redis path: the reserve script inside redis-server",
        f"`python benchmarks/bench_redis_path.py --script --views {views} --passes {passes}`: "
        f"{len(requests)} reserve requests of light pages ({size:.0f} B each on average), replayed "
        f"pipelined {REPLAYS} times a pass on fresh keys, {passes} passes per part; redis-server CPU µs "
        "per page, median (range).", "",
        "| script | µs per page |", "|---|---:|",
        *(f"| {part} | {statistics.median(got):.1f} ({min(got):.1f}–{max(got):.1f}) |" for part, got in cpu.items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", help="the other checkout's code (not with --script)")
    parser.add_argument("--script", action="store_true", help="time the reserve script inside redis-server")
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--pixels", type=float, default=0.0, help="share of pages whose ad pixels arrive")
    args = parser.parse_args()
    if args.script:
        print(script_parts(args.views, args.passes))
    elif args.baseline_ref:
        print(run(args.baseline_ref, args.views, args.passes, args.pixels))
    else:
        parser.error("--baseline-ref or --script")


if __name__ == "__main__":
    main()
