"""Instructions per light page of our own per-page work, and the pages' answers, for two checkouts.

    python benchmarks/callgrind_page.py [--ref main] [--pages 300] [--warm 300] [--part page|slice|parse]
    python benchmarks/callgrind_page.py --compare [--ref main] [--pages 2000]

bench_inprocess's world and light page (one 300x250 and a widget of 6), under a simulated clock
(``time.time`` and ``time.monotonic`` replaced before anything is imported, moved a page's worth
per page), fixed random seeds, fixed nonce and reservation id prefixes and ``PYTHONHASHSEED=0``: both codes
see the same pages, decide the same and answer the same, so their instruction counts compare
exactly and their answers can be compared byte for byte.

Parts (what the count covers per page): ``page``, parse + ``serve`` + ``Metrics.answered`` +
encoding the answer; ``slice``, the same with the page's decisions made beforehand (``decide``
answers fills made untimed: what is left is our own work between request and answer); ``parse``,
``parse_slot_request`` alone. ``--compare`` runs both codes outside valgrind and compares every
answer (tokens decoded) and every event-log line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
START = 1796223600.0  # 2026-12-02 15:00 UTC
PACE = 300e-6  # simulated seconds per page
BASE_URL = "http://127.0.0.1:8080"


def inside(checkout: Path, part: str, pages: int, warm: int, dump: str | None) -> None:
    """In the measured process: build the world's server, warm it up, run ``pages`` pages."""
    import time

    now = [START]
    time.time = lambda: now[0]
    time.monotonic = lambda: now[0] - START + 1000.0
    import secrets
    secrets.token_hex = lambda n=32: "0" * 2 * n  # nonce and reservation id prefixes
    import asyncio
    import gc
    import itertools

    sys.path[:0] = [str(checkout), str(ROOT)]
    import bench_inprocess as bench
    from bench_slots import PAGE_REQUEST, PAGES

    import orjson
    from adserve.server.metrics import Metrics

    page_request = {**PAGE_REQUEST, "slots": PAGES["light"][0]}
    scratch = Path(tempfile.mkdtemp(prefix="cgpage-"))
    worker = bench.Worker(checkout, scratch, 4, {"light": page_request}, True, None)
    server, loop = worker.server, worker.loop
    metrics = Metrics()
    runtime = server.runtime
    config = runtime.config

    class Made:
        """A decider whose decisions were made before the count started."""
        fills: dict

        async def decide(self, _request, _needs) -> dict:
            return self.fills

    made = Made()
    if part == "slice":
        import dataclasses
        sliced = dataclasses.replace(runtime, decider=made)
        sliced.layouts, sliced.shown = runtime.layouts, runtime.shown  # the same kept parts

    def step(coroutine):
        try:
            coroutine.send(None)  # the memory store never suspends
        except StopIteration as done:
            return done.value
        raise RuntimeError("a page suspended")

    def prepared(body: bytes):
        """What a page's count starts from: its decoded body, and its fills for ``slice``."""
        decoded = orjson.loads(body)
        if part != "slice":
            return decoded, None
        request = worker._request(body)
        return decoded, step(runtime.decider.decide(request, runtime.layout(request.slots).needs))

    def page(decoded, fills):
        now[0] += PACE
        request = worker.parse(decoded, config.placements, config.server.max_slots, **worker.parse_options)
        if part == "parse":
            return request
        if part == "slice":
            made.fills = fills
            answer = step(server.slots.serve(sliced, request, BASE_URL))
        else:
            answer = step(server.slots.serve(runtime, request, BASE_URL))
        metrics.answered(answer, 0.001)
        return orjson.dumps({"slots": answer})

    ablate(server, metrics, os.environ.get("ABLATE", ""))
    for body in worker.bodies("light", warm):
        page(*prepared(body))
    views = [prepared(body) for body in worker.bodies("light", pages)]
    gc.collect()
    if dump is None:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=True)
    answers = list(itertools.starmap(page, views))
    if dump is None:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=True)
        return
    server.events.close()
    with open(dump, "w") as out:
        for answer in answers:
            print(json.dumps(decoded_tokens(orjson.loads(answer), server.signer), sort_keys=True), file=out)
        for path in sorted((scratch / "var" / "events").glob("*.jsonl")):
            out.write(path.read_text())


def ablate(server, metrics, parts: str) -> None:
    """Parts replaced by a constant, to read their share by difference (not for ``--compare``)."""
    from adserve.recs.recommender import Recommendation

    async def written(*_events):
        return None
    fixed = Recommendation(["a", "b", "c", "d"], "personal")
    stubs = {"sign": (server.signer, "sign", lambda payload, head=None: "token"),
             "event": (server.slots.events, "write", written),
             "metrics": (metrics, "answered", lambda answer, seconds: None),
             "recommend": (server.slots.recommender, "recommend", lambda *args: fixed),
             "record": (server.slots.recommender, "record", lambda *args: None)}
    for part in filter(None, parts.split(",")):
        target, name, stub = stubs[part]
        setattr(target, name, stub)


def decoded_tokens(value, signer):
    """``value`` with each token in a URL replaced by its verified payload, keys sorted."""
    if isinstance(value, dict):
        return {key: decoded_tokens(item, signer) for key, item in value.items()}
    if isinstance(value, list):
        return [decoded_tokens(item, signer) for item in value]
    if isinstance(value, str) and "t=" in value:
        head, token = value.split("t=", 1)
        token, _, rest = token.partition("&")
        return [head, signer.verify(token), rest]
    return value


def first_difference(ours: list[str], theirs: list[str]) -> str:
    """The first line that differs, as the fields of each side that differ."""
    for number, (a, b) in enumerate(zip(ours, theirs), 1):
        if a != b:
            fields = [(x, y) for x, y in zip(a.split(", "), b.split(", ")) if x != y]
            return f"line {number}: {fields[:6]}"
    return f"line {min(len(ours), len(theirs)) + 1}: one side ends ({len(ours)} vs {len(theirs)} lines)"


def checkout_of(ref: str) -> Path:
    sys.path.insert(0, str(ROOT))
    import bench_inprocess
    return bench_inprocess.baseline_checkout(ref)


def run(checkout: Path, part: str, pages: int, warm: int, dump: str | None = None) -> str:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
    # bytecode compiled beforehand: a run that compiles it lays memory out otherwise, and id-keyed
    # dicts then probe differently (~1-2k instructions a page between the first run and the next)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "adserve"), str(ROOT)], check=True)
    command = [sys.executable, __file__, "--inside", str(checkout), part, str(pages), str(warm), dump or "-"]
    if dump is not None:
        subprocess.run(command, env=env, check=True)
        return dump
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
                        "--toggle-collect=starmap_next", f"--callgrind-out-file={out}", *command],
                       env=env, capture_output=True, text=True, check=True)
        text = out.read_text()
        total = int(re.search(r"^totals: (\d+)", text, re.M).group(1))
        keep = ROOT / "out" / f"callgrind-{part}-{checkout.name}.out"
        keep.write_text(text)
        return f"{total / pages / 1000:,.1f}k instructions a page ({keep})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", default="main")
    parser.add_argument("--part", default="slice", choices=("page", "slice", "parse"))
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--current", action="store_true", help="this checkout only")
    args = parser.parse_args()
    if args.compare and args.current:
        parser.error("--compare needs two checkouts: leave out --current")
    codes = {args.ref: checkout_of(args.ref), "current": ROOT.parent}
    if args.current:
        del codes[args.ref]
    if args.compare:
        with tempfile.TemporaryDirectory() as folder:
            dumps = [run(checkout, "page", args.pages, args.warm, f"{folder}/{label}.txt")
                     for label, checkout in codes.items()]
            same = Path(dumps[0]).read_text() == Path(dumps[1]).read_text()
            lines = len(Path(dumps[0]).read_text().splitlines())
            print(f"{lines} lines of answers and events: {'identical' if same else 'DIFFERENT'}")
            if not same:
                print(first_difference(*(Path(d).read_text().splitlines() for d in dumps)))
        return
    for label, checkout in codes.items():
        print(f"{label} {args.part}: {run(checkout, args.part, args.pages, args.warm)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        inside(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
               None if sys.argv[6] == "-" else sys.argv[6])
    else:
        main()
