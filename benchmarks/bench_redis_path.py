"""What Redis state adds to a page's CPU, in another checkout's code and in this one, in the same run.

    python benchmarks/bench_redis_path.py --baseline-ref main [--views 1000 --passes 7 --pixels 0]

Four bench_inprocess workers (each its own process: the baseline's code or this checkout's, on
the embedded store or on a redis-server of the run's own) answer bench_inprocess' light page in
alternating passes, without pixels by default, as the wrk traffic has none; once for the whole
page and once for ``Decider.decide`` alone. With ``--pixels`` a share of the pages' ad pixels
arrive after them: untimed in the workers, but their work is in the redis-server column. The
CPU a page costs on Redis minus what it costs on the embedded store, paired pass by pass, is
the Redis path's own cost in this process (Redis's CPU is not in it: its column is the
redis-server's own). Pages come one at a time, so every round trip also pays an idle loop's
wake-up, which a loaded server shares among the requests in flight.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench_inprocess import ROOT, Redis, Remote, baseline_checkout
from bench_slots import PAGE_REQUEST, PAGES
from bench_workers import cpu_seconds

STATES = ("memory", "redis")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--pixels", type=float, default=0.0, help="share of pages whose ad pixels arrive")
    args = parser.parse_args()
    print(run(args.baseline_ref, args.views, args.passes, args.pixels))


if __name__ == "__main__":
    main()
