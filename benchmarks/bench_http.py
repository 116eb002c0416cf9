"""A page's cost through aiohttp inside the process, against another checkout and the bare handler.

    python benchmarks/bench_http.py --baseline-ref main [--views 2000 --passes 7]

``bench_inprocess.py`` times parse + serve + encode; this times the whole request as the server
process sees it, minus the socket: the raw HTTP bytes of bench_slots' light page are handed to
aiohttp's connection handler (the listener's, as ``serve`` opens it) and the
response is taken from a transport that only keeps it. So aiohttp's parsing and response writing,
the front door, ``read_json``, metrics and the event log are in; ``send()``/``recv()`` are not
(they cost the same for the bare handler). In the same worker, passes of the bare aiohttp handler
(``bare_server.py``'s: read the body, answer the same bytes) alternate with the page's, so each
code's CPU µs per request come with the bare handler's: ``bare / page`` is this machine's in-process
counterpart of bench_slots' throughput ratio (wrk adds the sockets to both sides). A third pass
sends the same requests with ``SlotServer.serve`` answering a fixed answer: what remains is the
request path outside serving (aiohttp, the front door, reading and parsing the request, metrics,
encoding the answer).

``--callgrind`` counts instructions instead (valgrind's callgrind; load-independent): each code in
its own valgrind process, the same three passes, each ``--warm`` requests uninstrumented and then
``--views`` instrumented (``PYTHONHASHSEED=0``); instructions per request.

    python benchmarks/bench_http.py --baseline-ref main --callgrind [--views 200 --warm 350]

The world, the page views and the baseline worker are bench_inprocess's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_inprocess
from bench_inprocess import OUT, ROOT, baseline_checkout

KEEP_ALIVE = 24 * 3600.0
PASSES = ("page", "front", "bare")


class Transport:
    """What aiohttp's handler writes to; wakes the driver when a response went out."""

    def __init__(self) -> None:
        self.sent: asyncio.Future | None = None

    def write(self, data: bytes) -> None:
        if self.sent is not None and not self.sent.done():
            self.sent.set_result(bytes(data))

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    """One keep-alive connection of ``app``, opened the way ``listener.serve`` opens them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app, protocol) -> None:
        from aiohttp import web

        async def open_():  # kept alive between passes, however long the other passes take
            runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=KEEP_ALIVE, access_log=None)
            await runner.setup()
            try:  # as ``listener.listen`` does, where there is one
                from adserve.server import fastlane
                fastlane.install(runner.server, app)
            except ImportError:
                pass
            return protocol(runner.server, loop=loop, keepalive_timeout=KEEP_ALIVE, access_log=None)

        self.loop = loop
        self.handler = loop.run_until_complete(open_())
        if hasattr(type(self.handler), "listener"):  # the listener's handler counts its connections
            self.handler.listener = type("Listener", (), {"open": 1})()
        self.transport = Transport()
        self.handler.connection_made(self.transport)

    def times(self, requests: list[bytes]) -> list[float]:
        """CPU µs of each request, from its bytes arriving to its response written."""
        async def run() -> list[float]:
            times = []
            for data in requests:
                started = time.thread_time()
                self.transport.sent = self.loop.create_future()
                self.handler.data_received(data)
                head = (await self.transport.sent)[:12]
                times.append((time.thread_time() - started) * 1e6)
                assert head == b"HTTP/1.1 200", head
            return times
        return self.loop.run_until_complete(run())


def http_request(body: bytes) -> bytes:
    return (b"POST /v1/slots HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class Worker(bench_inprocess.Worker):
    """bench_inprocess's worker (this checkout's world and page views) with two connections: one
    to the checkout's app, one to the bare handler answering the same bytes."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        import orjson
        from aiohttp import web

        from adserve.server import listener
        from adserve.server.app import create_app

        asyncio.set_event_loop(self.loop)
        app = create_app(self.server)
        app.on_startup.clear()  # no background tasks: their cost is not the page's
        app.on_cleanup.clear()
        if hasattr(listener, "mark_answering"):  # as listener.serve did before the seventh round
            app.middlewares.insert(0, listener.mark_answering)
        self.page = Connection(self.loop, app, listener.StampedHandler)
        answer = self.loop.run_until_complete(self._answer())  # a sample answer
        body = orjson.dumps({"slots": answer})

        async def fixed_answer(*_args) -> dict:
            return answer
        self._fixed_answer = fixed_answer

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, content_type="application/json")

        bare_app = web.Application()
        bare_app.router.add_route("*", "/{tail:.*}", bare)
        self.bare = Connection(self.loop, bare_app, web.RequestHandler)

    async def _answer(self) -> dict:
        return await self.server.slots.serve(self.server.runtime, self._request(self.bodies("light", 1)[0]),
                                             "http://127.0.0.1:8080")

    def http_pass(self, which: str, views: int) -> dict:
        """``page``: the page's requests; ``front``: the same with ``serve`` answering a fixed
        answer (what is left is the request path outside serving); ``bare``: the bare handler."""
        requests = [http_request(body) for body in self.bodies("light", views)]
        if which == "front":
            self.server.slots.serve = self._fixed_answer
        try:
            times = (self.bare if which == "bare" else self.page).times(requests)
        finally:
            vars(self.server.slots).pop("serve", None)
        return {"mean": statistics.fmean(times), "median": statistics.median(times)}


def work(checkout: Path, scratch: Path) -> None:
    out, sys.stdout = sys.stdout, sys.stderr
    worker = Worker(checkout, scratch, 4, json.loads(sys.argv[4]), True, None)
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        print(json.dumps(worker.http_pass(command["which"], command["views"])), file=out, flush=True)


def counted(checkout: Path, scratch: Path, pages: dict, warm: int, views: int) -> None:
    """Inside valgrind: each pass's ``views`` requests instrumented, one callgrind dump per pass."""
    worker = Worker(checkout, scratch, 4, pages, True, None)

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(os.getpid())], capture_output=True, check=True)
    for which in PASSES:
        worker.http_pass(which, warm)
        gc.collect()  # each count starts from the same collector state: no full collection
        gc.freeze()  # of what happens to be pending falls into one pass and not the other
        control("-i", "on")
        worker.http_pass(which, views)
        control("-i", "off")
        control(f"--dump={which}")


def instructions(label: str, checkout: Path, pages: dict, warm: int, views: int) -> dict[str, float]:
    """Instructions per request of each pass of ``checkout``'s code, in a valgrind process of its own."""
    out = OUT / f"callgrind-http-{label}.out"
    for old in OUT.glob(f"{out.name}*"):
        old.unlink()
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--counted", str(checkout), str(OUT / f"http-{label}"),
                    json.dumps(pages), str(warm), str(views)],
                   check=True, capture_output=True, cwd=checkout,
                   env={**os.environ, "PYTHONPATH": f"{checkout}:{ROOT}", "PYTHONHASHSEED": "0"})
    counts = {}
    for dump in OUT.glob(f"{out.name}.*"):
        text = dump.read_text()
        which = re.search(r"^desc: Trigger: dump (\w+)$", text, re.M)
        if which:
            counts[which.group(1)] = int(re.search(r"^totals: (\d+)", text, re.M).group(1)) / views
    return counts


def count_run(ref: str, warm: int, views: int) -> str:
    from bench_slots import PAGE_REQUEST, PAGES  # here: it imports this checkout's code, not the worker's

    pages = {name: {**PAGE_REQUEST, "slots": slots} for name, (slots, _label) in PAGES.items()}
    got = {label: instructions(label, checkout, pages, warm, views)
           for label, checkout in ((ref, baseline_checkout(ref)), ("current", ROOT.parent))}
    rows = [f"| {'this branch' if label == 'current' else f'`{label}`'} | "
            + " | ".join(f"{counts[which] / 1000:,.1f}k" for which in PASSES) + " |"
            for label, counts in got.items()]
    return "\n".join([
        f"`python benchmarks/bench_http.py --baseline-ref {ref} --callgrind --warm {warm} --views {views}`: "
        "instructions per request (callgrind), the light page's raw request through aiohttp's handler.",
        "", "| code | page | outside serving | bare handler |", "|---|---:|---:|---:|", *rows])


class Remote(bench_inprocess.Remote):
    def __init__(self, label: str, checkout: Path, pages: dict) -> None:
        import os
        import subprocess

        self.label = label
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(checkout), str(OUT / f"http-{label}"), json.dumps(pages)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": f"{checkout}:{ROOT}"}, cwd=checkout)
        self.ask(None)


def run(ref: str, views: int, passes: int) -> str:
    from bench_slots import PAGE_REQUEST, PAGES

    pages = {name: {**PAGE_REQUEST, "slots": slots} for name, (slots, _label) in PAGES.items()}
    remotes = [Remote(f"baseline-{ref}", baseline_checkout(ref), pages), Remote("current", ROOT.parent, pages)]
    runs = [(remote, which) for remote in remotes for which in PASSES]
    got: dict[tuple[str, str], list[float]] = {}
    try:
        for n in range(passes + 1):  # the first round warms up
            for remote, which in runs if n % 2 == 0 else runs[::-1]:
                mean = remote.ask({"which": which, "views": views})["mean"]
                if n:
                    got.setdefault((remote.label, which), []).append(mean)
                print(remote.label, which, round(mean, 1), file=sys.stderr)
    finally:
        for remote in remotes:
            remote.close()
    rows = []
    for remote in remotes:
        page, front, bare = (got[(remote.label, which)] for which in ("page", "front", "bare"))
        share = statistics.median(b / p for b, p in zip(bare, page))
        name = f"`{ref}`" if remote is remotes[0] else "this branch"
        rows.append(f"| {name} | {statistics.median(page):.0f} ({min(page):.0f}–{max(page):.0f}) "
                    f"| {statistics.median(front):.0f} ({min(front):.0f}–{max(front):.0f}) "
                    f"| {statistics.median(bare):.0f} | {share:.2f} |")

    def ratio(which: str) -> str:
        ratios = [c / b for c, b in zip(got[("current", which)], got[(remotes[0].label, which)])]
        return f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}–{max(ratios):.2f})"
    return "\n".join([
        f"### In-process HTTP request cost: this branch against `{ref}` and the bare handler",
        f"`python benchmarks/bench_http.py --baseline-ref {ref} --views {views} --passes {passes}`: the light "
        f"page's raw request through aiohttp's connection handler, no sockets; {passes} alternating passes of "
        f"{views} page views after a warm-up round. CPU µs per request, median of the passes' means (range); "
        "'outside serving' is the same request with `serve` answering a fixed answer.",
        "", "| code | page µs | outside serving µs | bare handler µs | bare / page |", "|---|---:|---:|---:|---:|",
        *rows, "",
        f"This branch / `{ref}` (median of the passes' ratios, range): page {ratio('page')}, "
        f"outside serving {ratio('front')}.",
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        work(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--counted":
        counted(Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True, help="git ref whose code is the baseline")
    parser.add_argument("--views", type=int, default=2000, help="page views per pass")
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead of timing")
    parser.add_argument("--warm", type=int, default=350, help="uninstrumented requests before each count")
    args = parser.parse_args()
    if args.callgrind:
        print(count_run(args.baseline_ref, args.warm, args.views))
    else:
        print(run(args.baseline_ref, args.views, args.passes))


if __name__ == "__main__":
    main()
