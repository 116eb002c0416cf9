"""The book's size through the HTTP API: requests per second with 10,000 campaigns against 100.

#18's own measure: its reviewer loaded the server over HTTP with page views whose contexts rarely
repeat and found 10,000 campaigns at 0.05x the requests per second of 100. This benchmark serves
each book from YAML files with ``adserve serve`` (one worker, the embedded store or a real
redis-server) and loads the servers in turn with wrk over loopback, in one run:

- ``review``: the reviewer's page and book. One 300x250 slot; each view a random section of 8, two
  of 500 keywords, a device, a country and a new URL; campaigns aimed at a section, three include
  keywords and two devices (a page matches ~0.1% of them), and one house ad.
- ``narrow`` and ``broad``: bench_decision.py's site, books and demands (its docstring): 20,000
  articles read popular-first, each with its keywords and URL, readers who come back (so reader
  caps refuse draws), a page of two display slots (300x250 and a top banner).

Fresh: every view's URL is new (a per-view tag), so every page context is new to the server.
Cached: views of 400 page contexts (page, URL, device and country) that the server has seen.
Readers, in either mode, are drawn from 50,000 of whom some come back often. Counters are live:
every fill holds its caps and budgets until the reservation ends, and small daily budgets run out.
(bench_decision.py's cached passes replay 400 whole views, their readers included: each reader
then rereads one page at thousands of views a second, and its caps refuse most draws of a
narrow book.) No pixel confirms an impression (wrk sends no second request), so nothing
is billed; holds refuse draws as billed impressions would. bench_decision.py times ``decide``
alone, in-process: the stricter measure of the same books, as the page's fixed cost (HTTP,
parsing, tokens, the event log) is left out there.

    python benchmarks/bench_book.py [ROUNDS [SECONDS [WORLD ...]]]  # writes its section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from bench_decision import COUNTRIES, DEVICES, PLACEMENTS, SHAPES, TIMEZONE, WARM_CONTEXTS, articles, book, house
from bench_slots import Readers, measured_run
from common import OUT, LiveServer, free_port, machine, median_spread, replace_section, wrk
from world import write_campaigns

from adserve.model import Campaign, Config, Creative, Flight, Price, Site, Targeting, Variant
from tests.conftest import start_redis
from tests.live import REPO

BIG, SMALL = 10_000, 100
CONNECTIONS = 32
WARM_SECONDS = 15  # each server's first load, untimed: its index activated, pacing plans worked out
REVIEW_SECTIONS = [f"section{n}" for n in range(8)]
REVIEW_WORDS = [f"word{n}" for n in range(500)]
SITE_SLOTS = [{"id": "side", "placement": "sidebar-300x250"}, {"id": "top", "placement": "top-banner"}]
REVIEW_SLOTS = SITE_SLOTS[:1]

LUA = """
local pages = {%(pages)s}  -- a page's JSON up to its URL, left open for the view's tag
local contexts = {%(contexts)s}  -- whole page contexts: the cached mode's views come from these
local devices = {%(devices)s}
local countries = {%(countries)s}
local skew = %(skew)s  -- pages[n * r ^ skew]: 1 even, 3 a few pages draw most views
local slots = [==[%(slots)s]==]
local counter = 0
init = function(args)  -- the run's first view number: tags stay new from one run to the next
  counter = tonumber(args[1]) or 0
  math.randomseed(counter %% 2147483647)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local context
  if #contexts > 0 then
    context = contexts[math.random(#contexts)]
  else
    context = '{"page":' .. pages[math.floor(#pages * math.random() ^ skew) + 1] .. '?v=' .. counter
      .. '"},"device":"' .. devices[math.random(#devices)] .. '","country":"'
      .. countries[math.random(#countries)] .. '","slots":' .. slots
  end
  local reader = math.floor(50000 * math.random() ^ 2)  -- readers come back: their caps refuse draws
  return wrk.format(nil, nil, nil, context .. ',"user":{"id":"reader-' .. reader .. '"}}')
end
"""


@dataclasses.dataclass
class World:
    """A kind of traffic and the books served to it."""

    pages: list[dict]  # each with its URL last
    skew: int
    slots: list[dict]
    books: dict[tuple[int, str], Config]  # (campaigns, demand) -> book

    def script(self, folder: Path, cached: bool) -> Path:
        """wrk's Lua for this world's fresh views, or for views of ``WARM_CONTEXTS`` page contexts."""
        path = folder / f"book-{'cached' if cached else 'fresh'}-{id(self)}.lua"
        contexts = self.contexts() if cached else []
        path.write_text(LUA % {
            "pages": ",".join(_lua(_open_url(page)) for page in self.pages),
            "contexts": ",".join(_lua(c) for c in contexts), "skew": self.skew, "slots": json.dumps(self.slots),
            "devices": ",".join(_lua(d) for d in DEVICES), "countries": ",".join(_lua(c) for c in COUNTRIES)})
        return path

    def contexts(self) -> list[str]:
        """``WARM_CONTEXTS`` page contexts (a page, its URL, a device and a country) drawn as the
        fresh views' are, each a request body but for its reader: ``{"page":...,"slots":[...]``."""
        rng = random.Random(99)
        contexts = []
        for n in range(WARM_CONTEXTS):
            page = dict(self.pages[int(len(self.pages) * rng.random() ** self.skew)])
            page["url"] += f"?v=context-{n}"
            body = json.dumps({"page": page, "device": rng.choice(DEVICES), "country": rng.choice(COUNTRIES),
                               "slots": self.slots})
            contexts.append(body[:-1])
        return contexts


def _lua(text: str) -> str:
    return f"[==[{text}]==]"


def _open_url(page: dict) -> str:
    """``page`` as JSON with its URL (the last key) left open: ``{"...","url":"https://...``."""
    text = json.dumps(page)
    assert text.endswith('"}') and list(page)[-1] == "url"
    return text[:-2]


def review_campaign(cid: int, rng: random.Random, now: dt.datetime) -> Campaign:
    """The reviewer's campaign: a section, three include keywords and two devices."""
    targeting = Targeting(sections=[rng.choice(REVIEW_SECTIONS)], devices=rng.sample(["desktop", "mobile", "tablet", "app"], 2))
    targeting.keywords.include = rng.sample(REVIEW_WORDS, 3)
    return Campaign(id=cid, name=f"Campaign {cid}", advertiser=f"Advertiser {cid % 400}", tier="standard",
                    flight=Flight(start=now - dt.timedelta(days=30), end=now + dt.timedelta(days=30)),
                    price=Price(model="cpm", amount=2), targeting=targeting,
                    creatives=[Creative(id=f"g{cid}", size="300x250", landing_url=f"https://adv{cid}.example/",
                                        variants=[Variant(id="A", image_url="/static/creatives/house-300x250.svg")])])


def worlds(now: dt.datetime) -> dict[str, World]:
    rng = random.Random(5)
    review_pages = [{"item_id": f"p{n}", "section": rng.choice(REVIEW_SECTIONS), "keywords": rng.sample(REVIEW_WORDS, 2),
                     "url": f"https://news.example/p{n}"} for n in range(20_000)]
    site = Site(timezone=TIMEZONE, unique_advertiser_per_page=True)
    review = {(n, "per campaign"): Config(site=site, placements=PLACEMENTS, campaigns=[
        review_campaign(100_000 + i, random.Random(n * 1000 + i), now) for i in range(n)] + [house(1, "300x250", now)])
        for n in (SMALL, BIG)}
    out = {"review": World(review_pages, 1, REVIEW_SLOTS, review)}
    site_pages = articles()
    for shape in SHAPES:
        books = {(n, demand): book(n, now, shape, demand) for n, demand in
                 ((SMALL, "per campaign"), (SMALL, "equal"), (BIG, "per campaign"))}
        out[shape] = World(site_pages, 3, SITE_SLOTS, books)
    return out


def _plain(value):
    """A model value as the YAML a marketer writes: no empty fields, times in ISO 8601."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.isoformat() if isinstance(value, dt.datetime) else value


def write_book(folder: Path, config: Config, redis_url: str | None) -> Path:
    """``config``'s campaigns as YAML files under ``folder``/config, beside the demo's site settings."""
    target = folder / "config"
    (target / "campaigns").mkdir(parents=True)
    site = yaml.safe_load((REPO / "config" / "site.yaml").read_text())
    site["site"]["timezone"] = config.site.timezone
    site["server"]["event_dir"] = "var/events"
    if redis_url:
        site["server"]["redis_url"] = redis_url
    (target / "site.yaml").write_text(yaml.safe_dump(site))
    shutil.copy(REPO / "config" / "catalog.jsonl", target / "catalog.jsonl")
    write_campaigns(target, [_plain(dataclasses.asdict(c)) for c in config.campaigns], "book")
    return folder


@dataclasses.dataclass
class Measured:
    """One world against one store: each book's wrk runs, by mode, then by book."""

    world: str
    store: str
    runs: dict[str, dict[tuple[int, str], list]]

    def ratios(self, mode: str, demand: str, key) -> list[float]:
        """Per round, the big book's ``key`` over the small one's of ``demand``."""
        return [key(big) / key(small) for big, small in zip(self.runs[mode][BIG, "per campaign"],
                                                            self.runs[mode][SMALL, demand])]


def measure(name: str, world: World, folder: Path, next_redis_url, rounds: int, seconds: int) -> Measured:
    """Every book of ``world`` served at once, loaded in turn (the order rotating each round);
    ``next_redis_url``: None for the embedded store, else a database of its own for each book."""
    store = "redis" if next_redis_url else "memory"
    servers = {}
    try:
        for key, config in world.books.items():
            home = folder / f"{name}-{store}-{key[0]}-{key[1][0]}"
            write_book(home, config, next_redis_url and next_redis_url())
            servers[key] = LiveServer(home).start(timeout=120)
        readers, runs = Readers(), {}
        for mode in ("fresh", "cached"):
            script = world.script(folder, mode == "cached")
            for server in servers.values():  # untimed: the index activated, pacing worked out, contexts seen
                wrk(server.url + "/v1/slots", script, CONNECTIONS, WARM_SECONDS if mode == "fresh" else 2, (readers(),))
            runs[mode] = {key: [] for key in servers}
            order = list(servers)
            for n in range(rounds):
                for key in order[n % len(order):] + order[:n % len(order)]:
                    runs[mode][key].append(measured_run(servers[key].url, servers[key].process.pid, script,
                                                        CONNECTIONS, seconds, readers()))
                print(f"{name}, {mode}, round {n + 1}: " + ", ".join(
                    f"{k[0]} {k[1]} {answered(runs[mode][k][-1]):.0f}/s" for k in order), file=sys.stderr)
        return Measured(name, store, runs)
    finally:
        for server in servers.values():
            server.stop()
            shutil.rmtree(server.folder)  # its event log: a few hundred MB


def run(rounds: int = 5, seconds: int = 2, only: tuple[str, ...] = ()) -> str:
    """``rounds`` of ``seconds`` per book, mode and store, for every world (or ``only`` those named)."""
    now = dt.datetime.now(dt.timezone.utc)
    measured = []
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        folder = Path(scratch)
        port = free_port()
        redis = start_redis(port, folder)
        databases = iter(range(16))
        try:
            for name, world in worlds(now).items():
                if only and name not in only:
                    continue
                measured.append(measure(name, world, folder, None, rounds, seconds))
                measured.append(measure(name, world, folder, lambda: f"redis://127.0.0.1:{port}/{next(databases)}",
                                        rounds, seconds))
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    return report(measured, rounds, seconds, now)


GOALS = {"fresh": 0.5, "cached": 0.8}


def answered(run) -> float:
    """Pages answered per second: a refusal (503 past capacity) costs microseconds and is not one."""
    return (run.load.requests - run.load.non_2xx) / run.load.seconds


def cpu_per_page(run) -> float:
    """Server CPU µs per page answered (refusals' few µs included)."""
    return run.server_us * run.load.requests / max(1, run.load.requests - run.load.non_2xx)


def report(measured: list[Measured], rounds: int, seconds: int, now: dt.datetime) -> str:
    rows, ratios = [], []
    for m in measured:
        for mode, books in m.runs.items():
            for (campaigns, demand), got in books.items():
                loads = [r.load for r in got]
                rows.append(f"| {m.world} | {m.store} | {mode} | {campaigns:,} | {demand} "
                            f"| {median_spread([answered(r) for r in got], 0)} | {median_spread([r.p99_ms for r in loads], 1)} "
                            f"| {median_spread([cpu_per_page(r) for r in got], 0)} | {sum(r.non_2xx for r in loads)} |")
            for demand in sorted({d for n, d in books if n == SMALL}, reverse=True):
                rps = m.ratios(mode, demand, answered)
                cpu = m.ratios(mode, demand, lambda r: 1 / cpu_per_page(r))
                ratios.append(f"- {m.world} book, {m.store}, {mode} contexts, {demand} demand (goal >= "
                              f"{GOALS[mode]}x): **{statistics.median(rps):.2f}x** ({min(rps):.2f}–{max(rps):.2f}); "
                              f"by server CPU per page {statistics.median(cpu):.2f}x ({min(cpu):.2f}–{max(cpu):.2f})")
    return "\n".join([
        "### The book's size through the HTTP API: 10,000 campaigns against 100",
        f"`python benchmarks/bench_book.py {rounds} {seconds}` ({now:%Y-%m-%d %H:%M} UTC; {machine()}): "
        "each book served by `adserve serve` from its YAML files (one worker, the embedded store or one "
        "redis-server, a database each), all the books of a world up at once and loaded in turn by wrk "
        f"(1 thread, {CONNECTIONS} connections, {seconds} s a run, {rounds} rounds, the order rotating), "
        f"after {WARM_SECONDS} s of untimed fresh views each. Worlds: `review`, the page and book of "
        "#18's reviewer (one 300x250; a random section of 8, two of 500 keywords; campaigns aimed at a "
        "section, three keywords and two devices); `narrow` and `broad`, bench_decision.py's site, books "
        "and demands (its section below). Fresh: a new URL every view; cached: views of 400 page "
        "contexts; readers drawn per view in both. Counters are live: fills hold their caps and budgets (no pixel confirms "
        "them, so nothing is billed). Medians (min–max) of the rounds; a ratio is taken per round, "
        "between runs a few seconds apart. Rates count pages answered: a 503 past capacity (the overload "
        "guard, when the machine starves a server) is counted apart, as it costs microseconds.",
        "", "| world | store | contexts | campaigns | demand | pages answered/s | p99 ms | server CPU µs/page | 503s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|", *rows, "",
        "10,000 / 100 campaigns, pages answered per second (and the inverse ratio of server CPU per page):",
        *ratios, ""])


if __name__ == "__main__":
    text = run(*(int(a) for a in sys.argv[1:3]), only=tuple(sys.argv[3:]))
    print(text)
    replace_section(text)
