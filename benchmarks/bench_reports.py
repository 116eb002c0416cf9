"""Reports over a month of events: cold (every day rolled up), warm (only the open day re-read)
and a plain full scan (``orjson.loads`` per line, the same counts in a dict), in the same run.

    python benchmarks/bench_reports.py [--lines N] [--repeats 3]

Traffic modelled: a mid-size news site, 30 UTC days, one writer; per page view one decision with
a display slot (70% filled) and a widget, then ~1.3 hits (impressions of the ad and the widget,
1% clicks); 3% repeats, 1% bots, 1% over a limit; every line has an ``event_id``. Lines are made
from a pool of orjson-encoded events with the event id and time formatted in, so generating
millions takes about a minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

import orjson

from common import OUT, machine, median_spread, replace_section

from adserve.events import log_files
from adserve.reports.aggregate import report
from adserve.reports.rollup import FOLDER, rollups

DAYS = 30
START = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc).timestamp()
CAMPAIGNS = [12174, 12175, 20001, 20002, 20003, 30001, 90001, 90002]


def _pool(rng: random.Random, size: int = 4000) -> list[bytes]:
    """Event lines with ``%(ts)`` and ``%(id)`` left to fill in (``%`` appears nowhere else)."""
    lines = []
    for _ in range(size):
        user = f"reader-{rng.randrange(200_000)}"
        campaign = rng.choice(CAMPAIGNS)
        roll = rng.random()
        if roll < 0.43:
            display = ({"slot": "s1", "placement": "sidebar-300x250", "campaign": campaign,
                        "creative": f"cr-{campaign}", "variant": rng.choice("AB")} if rng.random() < 0.7
                       else {"slot": "s1", "placement": "sidebar-300x250", "fill": False})
            event = {"ts": 0, "type": "decision", "user": user, "page": f"a{rng.randrange(5000)}",
                     "device": "desktop", "consent": None,
                     "slots": [display, {"slot": "w", "placement": "you-might-like", "strategy": "personal",
                                         "items": [f"a{rng.randrange(5000)}" for _ in range(4)],
                                         "sponsored": [90001]}]}
        else:
            widget = rng.random() < 0.4
            kind = "click" if rng.random() < 0.01 else "impression"
            counted = rng.random() > 0.04
            billable = None if widget else counted and rng.random() > 0.01
            event = {"ts": 0, "type": kind, "user": user, "page": f"a{rng.randrange(5000)}", "slot": "s1",
                     "campaign": None if widget else campaign, "creative": None if widget else f"cr-{campaign}",
                     "variant": None if widget else rng.choice("AB"), "item": None, "items": None, "url": None,
                     "bot": not counted and rng.random() < 0.25, "token": f"{rng.getrandbits(64):016x}",
                     "consent": None, "placement": "you-might-like" if widget else "sidebar-300x250",
                     "strategy": "personal" if widget else None, "sponsored": False if widget else None,
                     "counted": counted, "billable": billable}
            if billable:
                event["charge"] = 12_000 if kind == "impression" else 0
        event["event_id"] = "ID"
        line = orjson.dumps(event).replace(b'"ts":0', b'"ts":%(ts)d.%(ms)03d', 1)
        lines.append(line.replace(b'"ID"', b'"%(id)s"'))
    return lines


def generate(folder: Path, lines: int, seed: int = 5) -> float:
    """A month of log files in ``folder``; the seconds it took."""
    began = time.perf_counter()
    rng = random.Random(seed)
    pool = _pool(rng)
    per_day = lines // DAYS
    for day in range(DAYS):
        start = START + day * 86400
        name = dt.datetime.fromtimestamp(start, dt.timezone.utc).date().isoformat()
        with open(folder / f"events-{name}.main.jsonl", "wb") as f:
            for block in range(0, per_day, 10_000):
                f.write(b"\n".join(pool[rng.randrange(len(pool))] % {
                    b"ts": start + (block + i) * 86400 // per_day, b"ms": i % 1000,
                    b"id": b"%d-%d" % (day, block + i)} for i in range(min(10_000, per_day - block))) + b"\n")
    return time.perf_counter() - began


def full_scan(folder: Path) -> Counter:
    """The baseline: every line parsed, impressions per campaign that counted and were billable."""
    counts, seen = Counter(), set()
    for path in log_files(folder):
        with open(path, "rb") as f:
            for line in f:
                event = orjson.loads(line)
                if event.get("event_id") is not None:
                    if event["event_id"] in seen:
                        continue
                    seen.add(event["event_id"])
                if (event["type"] == "impression" and event.get("counted") is True
                        and event.get("billable") is not False):
                    counts[event.get("campaign")] += 1
    return counts


def reported(folder: Path) -> Counter:
    return Counter({row["campaign_id"]: row["impressions"] for row in report(rollups(folder), "campaign")
                    if row["impressions"]})


def run(lines: int, repeats: int) -> str:
    folder = OUT / "reports-month"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    made = generate(folder, lines)
    size = sum(p.stat().st_size for p in log_files(folder))
    open_day = log_files(folder)[-1]
    times: dict[str, list[float]] = {"cold": [], "warm, open day grew": [], "warm, nothing new": [],
                                     "full scan": []}
    results = {}
    for _ in range(repeats):  # alternating, so load on the shared machine hits all alike
        shutil.rmtree(folder / FOLDER, ignore_errors=True)
        for name, prepare in (("cold", None), ("warm, open day grew", _grow(open_day)),
                              ("warm, nothing new", None), ("full scan", None)):
            if prepare:
                prepare()
            began = time.perf_counter()
            results[name] = full_scan(folder) if name == "full scan" else reported(folder)
            times[name].append(time.perf_counter() - began)
        scanned = {campaign: n for campaign, n in results["full scan"].items() if campaign is not None}
        assert scanned == dict(results["warm, open day grew"]) == dict(results["warm, nothing new"]), \
            "the report disagrees with the full scan"
    scan = statistics.median(times["full scan"])
    rows = "\n".join(f"| {name} | {median_spread(values, 2)} | {scan / statistics.median(values):.1f}x |"
                     for name, values in times.items())
    return f"""### Reports

From `python benchmarks/bench_reports.py --lines {lines} --repeats {repeats}` (machine: {machine()}).
A generated month: {lines:,} lines in {DAYS} daily files, {size / 2**30:.2f} GiB, written in {made:.0f} s.
`adserve report`'s work (rollups of every day, then rows per campaign) against a plain full scan
(`orjson.loads` per line, impressions per campaign in a dict) of the same files, alternating, medians
of {repeats} with (min–max) seconds; both give the same counts. Warm: the day rollups are stored,
and the open day has grown by 1,000 lines (re-read) or not at all.

| read | seconds | speed-up over the full scan |
|---|---:|---:|
{rows}
"""


def _grow(path: Path):
    """Append 1,000 lines to the open day (a copy of its first ones), as a running server does."""
    def grow() -> None:
        with open(path, "rb") as f:
            head = b"".join(next(f) for _ in range(1000))
        with open(path, "ab") as f:
            f.write(head.replace(b'"event_id":"', b'"event_id":"late-'))
    return grow


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=6_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    section = run(args.lines, args.repeats)
    replace_section(section)
    print(section)
