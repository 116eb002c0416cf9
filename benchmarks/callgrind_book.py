"""Instructions per page of ``Decider.decide`` for bench_decision's two books, under callgrind.

Wall or CPU time on a machine shared with other sessions moves by 2x between passes; instructions
counted by callgrind do not, so two codes (or two books) compare exactly. Each book runs in its own
``valgrind`` process, instrumented only while its measured pages run (``callgrind_control``
switches it on; ``--toggle-collect`` keeps the count to the pages themselves). The clock is
simulated, from a fixed moment and a page every 60 µs (a server's pace, not valgrind's), so
pacing moves as often per page as in a real run and two codes see the same counters; a digest of
the fills says whether two codes decided the same. Unlike bench_decision, no fill is billed
between the measured pages, unless ``--as-bench``: bench_decision's own conditions, its pace
(200 µs a page), half the fills billed between the measured pages (not counted), and its
equal-demand 100 book too; the 10,000 book refuses more draws there, as caps fill.
``--cache-sim=yes`` adds simulated cache misses (L1 and last level). valgrind takes the last
level's size from the host, here a 480 MiB L3 where only first touches miss; ``--LL=2097152,16,64``
models this VM's 2 MiB L2 instead.

    python benchmarks/callgrind_book.py [cached|fresh] [narrow|broad] [PAGES] [--as-bench] [VALGRIND FLAGS]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_decision as bench

from adserve.decision import AdNeed
from adserve.state import MemoryState

START = 1796223600.0  # 2026-12-02 15:00 UTC: every run sees the same pacing and dayparts
PACE = 60e-6  # simulated seconds per page


async def prepared(campaigns: int, mode: str, shape: str, pages: int, clock: list[float], demand: str, pace: float):
    """A Run settled in as bench_decision's is (warm contexts, two passes), and the views to measure."""
    articles = bench.articles()
    run = bench.Run(bench.book(campaigns, dt.datetime.fromtimestamp(START, bench.UTC), shape, demand),
                    MemoryState(clock=lambda: clock[0]))
    run.decider.clock = lambda: dt.datetime.fromtimestamp(clock[0], dt.timezone.utc)
    decide = run.decider.decide

    async def paced(*args):
        clock[0] += pace
        return await decide(*args)
    run.decider.decide = paced
    warm = bench.page_views(bench.WARM_CONTEXTS, 99, articles, tag=True)
    warm_views = [warm[i % len(warm)] for i in random.Random(3).sample(range(1500), 1500)]
    await run.decide(bench.page_views(200, 1, articles, tag=True) + warm)
    run.settle_in()
    gc.collect()
    gc.freeze()
    for repeat in range(3):
        await run.decide(warm)
        views = bench.page_views(1500, 10 + repeat, articles, tag=True) if mode == "fresh" else warm_views
        if repeat < 2:
            await run.decide(views)
    del run.decider.decide
    return run, views[:pages]


def measured(campaigns: int, mode: str, shape: str, pages: int, demand: str = "per campaign",
             billed: bool = False) -> None:
    """Inside valgrind: decide ``pages`` pages with instrumentation on, print the fills' digest.
    ``billed``: at bench_decision's pace, half the fills billed after each page, outside the count."""
    clock, pace = [START], bench.PACE if billed else PACE
    run, views = asyncio.run(prepared(campaigns, mode, shape, pages, clock, demand, pace))
    decider = run.decider

    def page(view):
        clock[0] += pace
        return done(decider.decide(view, [AdNeed(s.id, s.sizes, s.placement) for s in view.slots]))

    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=True)
    if billed:  # one page at a time through starmap (counted), its bills outside it
        fills = []
        for view in views:
            fills += itertools.starmap(page, ((view,),))
            done(run.bill(view, fills[-1]))
    else:
        fills = list(itertools.starmap(page, ((view,) for view in views)))
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=True)
    picked = [(key, f.campaign.id, f.creative.id, f.variant.id, f.reservation is not None) if f else None
              for answer in fills for key, f in answer.items()]
    reserved = sum(f is not None and f.reservation is not None for answer in fills for f in answer.values())
    print(f"digest {hashlib.md5(repr(picked).encode()).hexdigest()[:12]} reserved {reserved / len(views):.3f}")


def done(step):
    """The value of a coroutine of the memory store, which never suspends."""
    try:
        step.send(None)
    except StopIteration as finished:
        return finished.value
    raise RuntimeError("the decision suspended")


def main(mode: str = "cached", shape: str = "narrow", pages: int = 1500, flags: tuple[str, ...] = ()) -> None:
    billed = "--as-bench" in flags
    flags = tuple(flag for flag in flags if flag != "--as-bench")
    books = bench.LINEUP if billed else [(n, "per campaign") for n in bench.BOOKS]
    with tempfile.TemporaryDirectory() as folder:
        for campaigns, demand in books:
            out = Path(folder) / f"{campaigns}{demand[0]}.out"
            ran = subprocess.run(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
                 "--toggle-collect=starmap_next", f"--callgrind-out-file={out}", *flags, sys.executable,
                 __file__, "--inside", str(campaigns), mode, shape, str(pages), demand, str(billed)],
                capture_output=True, text=True, check=True)
            events = re.search(r"^events: (.*)$", out.read_text(), re.M).group(1).split()
            totals = map(int, re.search(r"^totals: (.*)$", out.read_text(), re.M).group(1).split())
            per_page = ", ".join(f"{name} {total / pages:,.1f}" for name, total in zip(events, totals))
            print(f"{shape} {mode} {campaigns:,} campaigns, {demand} demand: {ran.stdout.strip()}; "
                  f"per page: {per_page}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        measured(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7] == "True")
    else:
        given = [a for a in sys.argv[1:] if not a.startswith("--")]
        main(*given[:2], *map(int, given[2:3]), flags=tuple(a for a in sys.argv[1:] if a.startswith("--")))
