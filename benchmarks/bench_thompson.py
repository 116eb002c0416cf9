"""What Thompson allocation adds to a decision, against the fixed split in the same run.

In-process, one campaign whose 300x250 creative has three variants, once with a fixed split and
once with ``variant_optimization: thompson``; 2,000 page views with one display slot, half from
new readers (a draw and an assignment written) and half returning (the assignment read). Passes
alternate between the two deciders; the clock moves 5 ms per page view (200 views a second of
this creative), so Thompson's shares are recomputed every 1,000 views; the recomputation's own
cost is timed apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time

import common  # noqa: F401  (puts the repository on the path)

from adserve.abtest import Arm, prob_best
from adserve.decision import AdNeed, Decider, Inventory
from adserve.ledger import Ledger
from adserve.model import Campaign, Config, Creative, Flight, Price, Variant
from adserve.request import parse_slot_request
from adserve.state import MemoryState

UTC = dt.timezone.utc
VIEWS = 2000


def decider(method: str) -> tuple[Decider, list[dt.datetime]]:
    creative = Creative(id="cr", size="300x250", landing_url="https://a.example/",
                        variants=[Variant(id=v, image_url="/x.svg") for v in "ABC"])
    campaign = Campaign(id=1, name="c", advertiser="a", price=Price(model="cpm", amount=1),
                        flight=Flight(start=dt.datetime(2026, 1, 1, tzinfo=UTC), end=dt.datetime(2030, 1, 1, tzinfo=UTC)),
                        creatives=[creative], variant_optimization=method)
    now = [dt.datetime(2026, 6, 1, tzinfo=UTC)]
    return Decider(Inventory(Config(campaigns=[campaign])), Ledger("UTC"), MemoryState(), rng=random.Random(1),
                   clock=lambda: now[0]), now


def one_pass(d: Decider, now: list[dt.datetime], loop, pass_no: int) -> float:
    views = [parse_slot_request({"page": {"item_id": "a"}, "user": {"id": f"r{pass_no}-{i // 2}" if i % 2 else f"r-{i}"},
                                 "slots": [{"id": "s", "type": "display", "sizes": ["300x250"]}]}, {}, 20)
             for i in range(VIEWS)]
    need = [AdNeed("s", ("300x250",), None)]
    started = time.perf_counter()
    for view in views:
        now[0] += dt.timedelta(milliseconds=5)
        fill = loop.run_until_complete(d.decide(view, need))["s"]
        loop.run_until_complete(d.allocation.count({"type": "impression", "creative": "cr",
                                                    "variant": fill.variant.id, "token": f"{time.perf_counter()}"}, 60))
    return (time.perf_counter() - started) / VIEWS * 1e6


def run(repeats: int = 5) -> str:
    loop = asyncio.new_event_loop()
    deciders = {method: decider(method) for method in ("fixed", "thompson")}
    times: dict[str, list[float]] = {method: [] for method in deciders}
    for n in range(repeats):
        for method, (d, now) in deciders.items():  # alternating, in the same run
            times[method].append(one_pass(d, now, loop, n))
    loop.close()
    arms = [Arm(5000, 60), Arm(5000, 45), Arm(3000, 40)]
    started = time.perf_counter()
    for _ in range(50):
        prob_best(arms)
    quadrature_ms = (time.perf_counter() - started) / 50 * 1e3
    fixed, thompson = (statistics.median(times[m]) for m in ("fixed", "thompson"))
    return "\n".join([
        "### Thompson allocation vs fixed split",
        f"In-process decide + counted impression per page view, one slot, 3 variants, {VIEWS:,} views a pass "
        f"(half new readers, half returning), {repeats} alternating passes; medians.", "",
        "| split | µs per page view (median) | spread |", "|---|---:|---:|",
        *(f"| {m} | {statistics.median(t):.1f} | {min(t):.1f}–{max(t):.1f} |" for m, t in times.items()), "",
        f"**thompson / fixed: {thompson / fixed:.2f}x**; recomputing the shares of 3 variants (quadrature): "
        f"{quadrature_ms:.1f} ms, at most once per creative every 5 s.", ""])


if __name__ == "__main__":
    print(run())
