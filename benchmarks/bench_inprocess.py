"""A page's cost inside the process, against another checkout's code in the same run.

    python benchmarks/bench_inprocess.py --baseline-ref 5bb1326 [--views 5000 --passes 5] [--record]

Times ``parse_slot_request`` + ``SlotServer.serve`` + encoding the answer per page, no HTTP, on
the benchmarks' world (1,000 campaigns, 100k articles, a trained model) for bench_slots' light page
(one 300x250 and a widget of 6) and its heavy page (two display slots and the widget), and
``Decider.decide`` alone for the light page, and its widget alone (``SlotServer._recs``, fills
from a ``decide`` done untimed). Each pass is ``--views`` page views of articles that
rarely repeat (so nothing is cached per page), in ``--keyword-sets`` x 8 sections x 2 devices x 3
countries targeting contexts (the wrk benchmark's traffic has 8; raise it to see the cost of
working out targeting for new contexts), half of them by 1,000 returning readers (so caps refuse)
and half by readers never seen again; after ``--pixels`` of the pages their ad pixels arrive
(untimed), so reservations settle and counters move. Times are the serving thread's CPU time:
wrk numbers say what a worker does under load, this says what a page costs, and stays usable
while other sessions share the machine, because both codes run alternately.

Each checkout runs in a worker process of its own (PYTHONPATH pointing at it; a baseline ref is
checked out with ``git worktree add`` under benchmarks/out/) that builds its server once and then
answers "run a pass" requests, so baseline and current passes alternate. The workers also report
the bytes held per open reservation (tracemalloc, over decisions whose counters already exist).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import inspect
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
SECRET = "bench-inprocess-secret-0123456789abcdef"
SECTIONS = ["politics", "world", "economy", "technology", "science", "culture", "sports", "opinion"]
PASSES = (("light", "pass"), ("heavy", "pass"), ("light", "decide"),  # (page, what is timed)
          ("light", "widget"), ("display", "answer"))
KEYWORDS = ["election", "senate", "budget", "tariffs", "climate", "ai", "court", "nato", "jobs",
            "housing", "transit", "health"]


# -- the worker: one checkout's code ----------------------------------------------------------

class Clock:
    """The wall clock, movable forward: the reservation measurement waits out the hold time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.offset, dt.timezone.utc)


class Worker:
    def __init__(self, checkout: Path, scratch: Path, keyword_sets: int, pages: dict, freeze: bool,
                 redis_url: str | None) -> None:
        sys.path[:0] = [str(checkout), str(checkout / "benchmarks")]
        import world  # builds the world when it is missing
        from adserve.config import load_config
        from adserve.request import parse_slot_request
        from adserve.server.app import AdServer
        from adserve.state import RedisState

        folder = OUT / "world-1000"  # this checkout's world for both codes: the same catalog and model
        if not (folder / "var" / "model.npz").exists():
            world.build(folder, campaigns=1000, items=100_000)
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "var").mkdir(parents=True)
        (scratch / "config").symlink_to(folder / "config")
        (scratch / "var" / "model.npz").symlink_to(folder / "var" / "model.npz")
        os.chdir(scratch)  # the log goes to scratch/var/events, not into the world
        self.clock = Clock()
        loaded = load_config(Path("config"))
        assert loaded.ok, loaded.errors[:3]
        state = RedisState(redis_url, f"{scratch.name}:", lambda: self.clock().timestamp()) if redis_url else None
        self.server = AdServer(Path("config"), loaded, SECRET.encode(), state=state, clock=self.clock,
                               rng=random.Random(1), writer="bench")
        self.parse = parse_slot_request
        extra = inspect.signature(parse_slot_request).parameters
        self.parse_options = {"consent_required": loaded.config.site.consent_required} \
            if "consent_required" in extra else {}
        self.pages = pages
        self.rng = random.Random(7)
        self.keywords = [random.Random(n).sample(KEYWORDS, 1 + n % 3) for n in range(keyword_sets)]
        self.loop = asyncio.new_event_loop()
        if redis_url:
            from adserve.state import Replayed
            if self.loop.run_until_complete(self.server.state.open()):  # empty: up once restored
                self.loop.run_until_complete(self.server.state.restore(Replayed()))
        self.views = 0
        gc.collect()
        if freeze:
            gc.freeze()  # as ``serve`` does after start-up (the baseline may predate that: same for both)

    def bodies(self, page: str, n: int) -> list[bytes]:
        """``n`` page views: rarely repeated contexts, returning and one-time readers."""
        bodies = []
        for _ in range(n):
            self.views += 1
            section = self.rng.choice(SECTIONS)
            item = f"{section}-{self.rng.randrange(100_000):05d}"
            user = f"reader-{self.rng.randrange(1000)}" if self.rng.random() < 0.5 else f"once-{self.views}"
            body = {**self.pages[page], "user": {"id": user},
                    "page": {"item_id": item, "section": section,
                             "keywords": self.rng.choice(self.keywords),
                             "url": f"https://news.example/{item}"},
                    "device": self.rng.choice(["desktop", "desktop", "mobile"]),
                    "country": self.rng.choice(["US", "US", "US", "CA", "GB"])}
            bodies.append(json.dumps(body).encode())
        return bodies

    async def _page(self, body: bytes) -> dict:
        import orjson

        answer = await self.server.slots.serve(self.server.runtime, self._request(body), "http://127.0.0.1:8080")
        orjson.dumps({"slots": answer})
        return answer

    async def _pixels(self, answer: dict) -> None:
        from adserve.server.tracking import Hit

        for slot in answer.values():
            ads = [slot] if slot["type"] == "display" else [i for i in slot["items"] if i.get("sponsored")]
            for ad in ads:
                if ad.get("impression_url"):
                    query = dict(parse_qsl(urlsplit(ad["impression_url"]).query))
                    payload = self.server.signer.verify(query["t"])  # a native in its widget's token: a=N
                    hit = Hit.impression(payload, query["a"]) if "a" in query else Hit.impression(payload)
                    await self.server.tracker.record(hit, "Mozilla/5.0", self.server.runtime)

    def run_pass(self, page: str, views: int, pixels: float) -> dict:
        """Per-page CPU times of one pass (µs): parse, serve and encode, pixels untimed.

        CPU time of this thread, not wall time: other sessions' processes preempt this one, and
        wall time would count their turns as the page's."""
        bodies = self.bodies(page, views)
        times, filled = [], 0
        gc.collect()
        collecting = self._collections()
        for body in bodies:
            started = time.thread_time()
            answer = self.loop.run_until_complete(self._page(body))
            times.append((time.thread_time() - started) * 1e6)
            ad = answer.get("side", {})
            filled += bool(ad.get("fill"))
            if self.rng.random() < pixels:
                self.loop.run_until_complete(self._pixels(answer))
        gc.callbacks.remove(collecting)
        return {"mean": statistics.fmean(times), "median": statistics.median(times),
                "fill": filled / len(bodies), "gc": collecting.spent / len(bodies)}

    @staticmethod
    def _collections():
        """A gc callback that adds up the CPU µs the collector spends (objects that open
        reservations keep alive are walked by every full collection)."""
        def collecting(phase: str, _info: dict) -> None:
            if phase == "start":
                collecting.started = time.thread_time()
            else:
                collecting.spent += (time.thread_time() - collecting.started) * 1e6
        collecting.spent = 0.0
        gc.callbacks.append(collecting)
        return collecting

    def answer_pass(self, page: str, views: int) -> dict:
        """CPU µs of ``serve`` + encoding with the page's decisions already made (``decide`` runs
        untimed first and ``serve`` is handed its fills): on the light page's display slot alone,
        what turns decisions into the answer: tokens, the answer's entries, the decision event."""
        import dataclasses

        runtime = self.server.runtime
        pages = []
        for body in self.bodies(page, views):
            request = self._request(body)
            needs = self._needs(request)
            pages.append((request, self.loop.run_until_complete(runtime.decider.decide(request, needs))))

        class Made:
            """A decider whose decisions were made before the clock started."""
            fills: dict

            async def decide(self, _request, _needs) -> dict:
                return self.fills

        made = Made()
        prepared = dataclasses.replace(runtime, decider=made)

        async def answer_all() -> list[float]:
            import orjson

            times = []
            for request, fills in pages:
                made.fills = fills
                started = time.thread_time()
                orjson.dumps({"slots": await self.server.slots.serve(prepared, request, "http://127.0.0.1:8080")})
                times.append((time.thread_time() - started) * 1e6)
            return times

        times = self.loop.run_until_complete(answer_all())
        filled = sum(any(fill is not None for fill in fills.values()) for _, fills in pages)
        return {"mean": statistics.fmean(times), "median": statistics.median(times), "fill": filled / len(pages)}

    def _needs(self, request) -> list:
        """The needs ``serve`` makes of a page: its display slots, then its widgets' sponsored positions."""
        from adserve.decision import AdNeed

        placements = self.server.runtime.config.placements
        needs = [AdNeed(s.id, s.sizes, s.placement) for s in request.slots if s.type == "display"]
        return needs + [AdNeed(f"{s.id}#{p}", ("native",), s.placement) for s in request.slots if s.type == "recs"
                        for p in placements[s.placement].sponsored_positions if p <= s.count]

    def decide_pass(self, page: str, views: int) -> dict:
        """CPU µs of ``Decider.decide`` alone for the needs ``serve`` makes of the page (the
        display slots, then the widget's sponsored positions), awaited in one task as a handler does."""
        decider = self.server.runtime.decider
        pages = []
        for body in self.bodies(page, views):
            request = self._request(body)
            pages.append((request, self._needs(request)))

        async def decide_all() -> tuple[list[float], int]:
            times, filled = [], 0
            for request, needs in pages:
                started = time.thread_time()
                fills = await decider.decide(request, needs)
                times.append((time.thread_time() - started) * 1e6)
                filled += fills[needs[0].key] is not None
            return times, filled

        times, filled = self.loop.run_until_complete(decide_all())
        return {"mean": statistics.fmean(times), "median": statistics.median(times), "fill": filled / len(pages)}

    def widget_pass(self, page: str, views: int) -> dict:
        """CPU µs of the widget alone: what ``serve`` calls for each recommendation slot
        (``SlotServer._recs``: recommendations, organic cards, natives, the widget's token), with
        fills from a ``decide`` done untimed and the page's readings recorded after it, as ``serve`` does."""
        from adserve.serving import _sponsored_positions

        runtime, slots = self.server.runtime, self.server.slots
        base_url = "http://127.0.0.1:8080"
        times, natives, positions_sold = [], 0, 0
        for body in self.bodies(page, views):
            request = self._request(body)
            widgets = [(s, _sponsored_positions(runtime, s)) for s in request.slots if s.type == "recs"]
            fills = self.loop.run_until_complete(runtime.decider.decide(request, self._needs(request)))
            natives += sum(fills.get(f"{s.id}#{p}") is not None for s, positions in widgets for p in positions)
            positions_sold += sum(len(positions) for _s, positions in widgets)
            on_page: set[str] = set()
            started = time.thread_time()
            for slot, positions in widgets:
                slots._recs(runtime, slot, positions, fills, request, base_url, on_page)
            times.append((time.thread_time() - started) * 1e6)
            reader = request.consent.content_reader(request.user_id)
            slots.recommender.record("decision", reader, request.page.item_id, slots._clock())
        return {"mean": statistics.fmean(times), "median": statistics.median(times),
                "fill": natives / max(positions_sold, 1)}

    def reservation_bytes(self, n: int = 3000) -> dict:
        """Bytes held per open reservation: decisions whose counters already exist, measured by
        tracemalloc after the earlier reservations were released (the clock jumps past the hold)."""
        import dataclasses

        from adserve.decision import AdNeed, Fill

        fields = getattr(Fill, "_fields", None) or [f.name for f in dataclasses.fields(Fill)]  # a tuple since the eighth round
        if "reservation" not in fields:
            return {"bytes": None, "reservations": 0}
        decider = self.server.runtime.decider
        requests = [self._request(body) for body in self.bodies("heavy", n)]
        for _round in range(2):  # the first round creates the counters, then its holds are released
            self.clock.offset += decider.hold_seconds + 1
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            reservations = 0
            for request in requests:  # the display slots: what the decisions keep, fills dropped
                fills = self.loop.run_until_complete(decider.decide(
                    request, [AdNeed(s.id, s.sizes, s.placement) for s in request.slots if s.type == "display"]))
                reservations += sum(1 for fill in fills.values() if fill is not None and fill.reservation)
            del fills
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
        return {"bytes": held / max(reservations, 1), "reservations": reservations}

    def _request(self, body: bytes):
        import orjson

        config = self.server.runtime.config
        return self.parse(orjson.loads(body), config.placements, config.server.max_slots, **self.parse_options)


def work(checkout: Path, scratch: Path, keyword_sets: int, pages: dict, freeze: bool, redis_url: str | None) -> None:
    """Answer JSON commands on stdin, one JSON line each on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing the code prints may break the protocol
    worker = Worker(checkout, scratch, keyword_sets, pages, freeze, redis_url)
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "pass":
            result = worker.run_pass(command["page"], command["views"], command["pixels"])
        elif command["do"] == "decide":
            result = worker.decide_pass(command["page"], command["views"])
        elif command["do"] == "widget":
            result = worker.widget_pass(command["page"], command["views"])
        elif command["do"] == "answer":
            result = worker.answer_pass(command["page"], command["views"])
        else:
            result = worker.reservation_bytes()
        print(json.dumps(result), file=out, flush=True)


# -- the parent: alternate the checkouts ----------------------------------------------------

class Remote:
    def __init__(self, label: str, checkout: Path, keyword_sets: int, pages: dict, freeze: bool,
                 redis_url: str) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(checkout), str(OUT / f"inprocess-{label}"),
             str(keyword_sets), json.dumps(pages), str(int(freeze)), redis_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=checkout)
        self.ask(None)

    def ask(self, command: dict | None) -> dict:
        if command is not None:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label} worker failed (see its stderr above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Redis:
    """A redis-server of the run's own; it counts the reads it processed (one per round trip of a
    client that waits for each reply: the pages here come one at a time)."""

    def __init__(self) -> None:
        from tests.conftest import free_port, start_redis

        port = free_port()
        self.process = start_redis(port, OUT)
        self.url = f"redis://127.0.0.1:{port}/0"

    def reads(self) -> int:
        import redis

        with redis.Redis.from_url(self.url) as client:
            return client.info("stats")["total_reads_processed"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def baseline_checkout(ref: str) -> Path:
    path = OUT / f"baseline-{ref}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT.parent), "worktree", "add", "--detach", str(path), ref],
                       check=True, capture_output=True)
    return path


def run(ref: str, views: int, passes: int, pixels: float, keyword_sets: int, freeze: bool, on_redis: bool) -> str:
    from bench_slots import PAGE_REQUEST, PAGES  # this checkout's pages, the same for both codes

    OUT.mkdir(exist_ok=True)
    pages = {name: {**PAGE_REQUEST, "slots": slots} for name, (slots, _label) in PAGES.items()}
    pages["display"] = {**PAGE_REQUEST, "slots": PAGES["light"][0][:1]}  # the light page's ad alone
    redis = Redis() if on_redis else None
    url = redis.url if redis else ""
    remotes = [Remote(f"baseline-{ref}", baseline_checkout(ref), keyword_sets, pages, freeze, url),
               Remote("current", ROOT.parent, keyword_sets, pages, freeze, url)]
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for page, do in PASSES:
            command = {"do": do, "page": page, "views": views, "pixels": pixels}
            for remote in remotes:  # a warm-up pass each: contexts, counters, caches
                remote.ask(command)
            for n in range(passes):
                for remote in remotes if n % 2 == 0 else remotes[::-1]:
                    reads = redis.reads() if redis else 0
                    got = remote.ask(command)
                    if redis:
                        got["round trips"] = (redis.reads() - reads) / views
                    results.setdefault((remote.label, f"{page} {do}"), []).append(got)
                    print(remote.label, page, {k: round(v, 3) for k, v in got.items()}, file=sys.stderr)
        held = {remote.label: remote.ask({"do": "reservations"}) for remote in remotes}
    finally:
        for remote in remotes:
            remote.close()
        if redis:
            redis.stop()
    return report(f"--baseline-ref {ref} --views {views} --passes {passes} --pixels {pixels} "
                  f"--keyword-sets {keyword_sets}" + ("" if freeze else " --no-freeze")
                  + (" --redis" if on_redis else ""), ref, views, passes, pixels, results, held)


def report(options, ref, views, passes, pixels, results, held) -> str:
    base, cur = f"baseline-{ref}", "current"
    rows = []
    for page, do in PASSES:
        b, c = results[(base, f"{page} {do}")], results[(cur, f"{page} {do}")]
        page = {"pass": f"{page} page", "answer": "light page's display slot, `serve` with its decisions made"}.get(
            do, f"{page} page, `{do}` only")
        ratios = [x["mean"] / y["mean"] for x, y in zip(c, b)]
        for label, got in ((f"`{ref}`", b), ("this branch", c)):
            means = sorted(r["mean"] for r in got)
            collected = f"{statistics.median(r['gc'] for r in got):.1f}" if "gc" in got[0] else ""
            rows.append(f"| {page} | {label} | {statistics.median(means):.0f} ({means[0]:.0f}–{means[-1]:.0f}) "
                        f"| {statistics.median(r['median'] for r in got):.0f} | {collected} "
                        f"| {statistics.median(r['fill'] for r in got):.2f} |")
        rows.append(f"| {page} | **ratio** | **{statistics.median(ratios):.2f}** "
                    f"({min(ratios):.2f}–{max(ratios):.2f}) | | | |")

    trips = [f"{page} {do}: `{ref}` {statistics.median(r['round trips'] for r in results[(base, f'{page} {do}')]):.2f}, "
             f"this branch {statistics.median(r['round trips'] for r in results[(cur, f'{page} {do}')]):.2f}"
             for page, do in PASSES if "round trips" in results[(cur, f"{page} {do}")][0]]

    def per_reservation(label: str) -> str:
        got = held[label]
        return "none made" if got["bytes"] is None else f"{got['bytes']:.0f} B ({got['reservations']} open)"

    return "\n".join([
        f"### In-process page cost: this branch against `{ref}`",
        f"`python benchmarks/bench_inprocess.py {options}`: "
        f"parse + serve + encode per page, no HTTP; {passes} alternating passes of {views} page views "
        f"each after a warm-up pass, pixels for {pixels:.0%} of pages; 1,000 campaigns, 100k articles, "
        "a trained model. CPU µs per page: median of the passes' means (range), median of the passes' "
        "per-page medians; the garbage collector's share of the mean; fill is the share of pages whose "
        "first display slot was filled (for `widget` only: of the widget's sold positions).",
        "",
        "| page | code | µs per page, mean | µs, per-page median | of which collector, µs | display fill |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Held per open reservation (tracemalloc, counters already existing): `{ref}` "
        f"{per_reservation(base)}, this branch {per_reservation(cur)}.",
        *([f"Round trips to Redis per page (the redis-server's reads, medians; pixels included): "
           + "; ".join(trips) + "."] if trips else []),
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        work(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6] == "1",
             sys.argv[7] or None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True, help="git ref whose code is the baseline (e.g. 5bb1326)")
    parser.add_argument("--views", type=int, default=5000, help="page views per pass")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--pixels", type=float, default=0.6, help="share of pages whose ad pixels arrive")
    parser.add_argument("--keyword-sets", type=int, default=4, help="distinct keyword sets pages carry")
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave start-up objects in the collector's sight (as before serve froze them)")
    parser.add_argument("--redis", action="store_true",
                        help="both codes on RedisState in one local redis-server (round trips per page counted)")
    parser.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    args = parser.parse_args()
    table = run(args.baseline_ref, args.views, args.passes, args.pixels, args.keyword_sets, not args.no_freeze,
                args.redis)
    print(table)
    if args.record:
        with open(ROOT / "RESULTS.md", "a") as results:
            results.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
