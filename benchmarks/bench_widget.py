"""The widget's and the answer's assembly against another ref's code, in ONE process.

    python benchmarks/bench_widget.py --baseline-ref main [--part widget|recs|organic|recommend --views 500 --passes 30]

``bench_inprocess.py`` compares whole pages in two processes; a few µs of a ~300 µs page drown in
the load of a shared machine there. This builds one server of the benchmarks' world and swaps in,
per pass of light pages, either this checkout's ``SlotServer``, ``Recommender`` and ``Popularity`` or
the ones of ``adserve/serving.py``, ``adserve/recs/recommender.py`` and ``adserve/recs/popularity.py``
at ``--baseline-ref`` (loaded from git into this package, so the other modules are this checkout's:
the ref's files must still fit them).
Both see the same catalog, model, popularity and counters. Timed (thread CPU time) is ``--part``:
``widget`` is ``SlotServer._recs`` + ``_display``, ``recs`` ``_recs`` alone (the widget, natives and tokens included), ``organic`` is ``_recs`` less its sponsored
natives and its signed token (``_ad`` and ``_token``, not timed): the widget's recommendation and
its articles' entries; ``recommend`` is ``Recommender.recommend``. Passes alternate in order, and the
median of the pairs' differences is what to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PARTS = {  # name -> (class, its methods timed, its methods whose time inside those is left out)
    "widget": ("SlotServer", ("_recs", "_display"), ()),
    "recs": ("SlotServer", ("_recs",), ()),
    "organic": ("SlotServer", ("_recs",), ("_ad", "_token")),
    "recommend": ("Recommender", ("recommend",), ()),
}


def baseline_module(ref: str, path: str, name: str, folder: Path):
    """``path`` as it is at ``ref``, imported as ``name`` (inside the adserve package)."""
    source = subprocess.run(["git", "-C", str(ROOT.parent), "show", f"{ref}:{path}"],
                            check=True, capture_output=True, text=True).stdout
    file = folder / path.replace("/", "_")
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--part", choices=sorted(PARTS), default="widget")
    parser.add_argument("--views", type=int, default=500, help="light pages per pass")
    parser.add_argument("--passes", type=int, default=30, help="pairs of passes")
    parser.add_argument("--fresh-hours", type=float, default=None,
                        help="recs.fresh_hours for both codes (the world's last 24 h hold 15 articles; "
                             "a news site publishing ~100 a day has that many fresh ones at 24)")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT.parent), str(ROOT)]
    import bench_inprocess
    from bench_slots import PAGE_REQUEST, PAGES

    import adserve.recs.popularity as popularity
    import adserve.recs.recommender as recommender
    import adserve.serving as serving

    pages = {name: {**PAGE_REQUEST, "slots": slots} for name, (slots, _label) in PAGES.items()}
    worker = bench_inprocess.Worker(ROOT.parent, ROOT / "out" / "widget-ab", 4, pages, True, None)
    with tempfile.TemporaryDirectory() as folder:
        old = {"serving": baseline_module(args.baseline_ref, "adserve/serving.py", "adserve._base_serving",
                                          Path(folder)),
               "recommender": baseline_module(args.baseline_ref, "adserve/recs/recommender.py",
                                              "adserve.recs._base_recommender", Path(folder)),
               "popularity": baseline_module(args.baseline_ref, "adserve/recs/popularity.py",
                                             "adserve.recs._base_popularity", Path(folder))}
    spent, open_ = [0.0], [0, 0]  # CPU seconds; timed calls and left-out calls under way
    owner, methods, untimed = PARTS[args.part]
    for module in (serving, recommender, old["serving"], old["recommender"]):
        cls = getattr(module, owner, None)
        if cls is not None and cls.__module__ == module.__name__:  # not the one it imports
            for name in methods:
                setattr(cls, name, timed(getattr(cls, name), spent, open_))
            for name in untimed:
                setattr(cls, name, left_out(getattr(cls, name), spent, open_))
    server = worker.server
    if args.fresh_hours is not None:
        server.recommender.recs = dataclasses.replace(server.recommender.recs, fresh_hours=args.fresh_hours)
    current = server.slots
    baseline = old["serving"].SlotServer(current.signer, current.events, current.catalog, current.recommender,
                                         current.discovery, current._clock)
    codes = {"baseline": (baseline, old["recommender"], old["popularity"]),
             "current": (current, recommender, popularity)}

    def use(code: str) -> None:
        slots, module, heat = codes[code]
        server.slots = slots
        server.recommender.__class__ = module.Recommender
        server.recommender.popularity.__class__ = heat.Popularity
        if server.recommender.model is not None:
            server.recommender.model.__class__ = module.LoadedModel

    for code in codes:  # warm-up: contexts, counters, memos
        use(code)
        worker.run_pass("light", 2 * args.views, 0.6)
    times: dict[str, list[float]] = {code: [] for code in codes}
    for n in range(args.passes):
        for code in ("baseline", "current") if n % 2 == 0 else ("current", "baseline"):
            use(code)
            spent[0] = 0.0
            worker.run_pass("light", args.views, 0.6)
            times[code].append(spent[0] / args.views * 1e6)
    differences = [c - b for b, c in zip(times["baseline"], times["current"])]
    ratios = [c / b for b, c in zip(times["baseline"], times["current"])]
    fresh = f", {len(server.recommender.fresh_items())} fresh articles" if args.fresh_hours is not None else ""
    print(f"{args.part}{fresh}, µs per light page (median of {args.passes} passes): `{args.baseline_ref}` "
          f"{statistics.median(times['baseline']):.1f}, this checkout {statistics.median(times['current']):.1f}; "
          f"difference {statistics.median(differences):+.1f} µs, ratio {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f})")


def timed(method, spent: list[float], open_: list[int]):
    """``method`` adding its CPU time to ``spent``; ``open_[0]`` counts such calls under way."""
    def timing(*args, **kwargs):
        open_[0] += 1
        started = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.thread_time() - started
            open_[0] -= 1
    return timing


def left_out(method, spent: list[float], open_: list[int]):
    """``method`` taking its CPU time off ``spent`` when a timed call is under way (``open_[0]``),
    once however deeply such calls nest (``open_[1]``: a left-out call inside another is not taken
    off twice); called elsewhere (``_display``'s ``_ad``), it is left alone."""
    def leaving_out(*args, **kwargs):
        if not open_[0] or open_[1]:
            return method(*args, **kwargs)
        open_[1] += 1
        started = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] -= time.thread_time() - started
            open_[1] -= 1
    return leaving_out


if __name__ == "__main__":
    main()
