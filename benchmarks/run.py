"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run.py                  # the full set, with a 10-minute soak (~20 min)
    python benchmarks/run.py --soak-minutes 2 # shorter soak

Needs Debian's wrk. Load only ever goes to 127.0.0.1, in bounded runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import bench_book
import bench_config
import bench_decision
import bench_event_sink
import bench_events
import bench_memory
import bench_overload
import bench_pacing
import bench_reports
import bench_slots
import bench_thompson
import bench_training
import bench_workers
from common import ROOT, machine

MUTATION = "### Mutation testing"  # the section docs/mutation-testing.md's runs summarise here


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--soak-minutes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.time()
    sections = [
        bench_slots.run(args.repeats),
        bench_overload.run(args.repeats),
        bench_workers.run(args.repeats),
        bench_decision.run(args.repeats + 2),
        bench_book.run(args.repeats + 2),
        bench_config.run(args.repeats),
        bench_thompson.run(args.repeats + 2),
        bench_pacing.run(),
        bench_events.run(args.repeats),
        bench_event_sink.run(args.repeats),
        bench_training.run(args.repeats),
        bench_reports.run(bench_reports.LINES, args.repeats),
        bench_memory.run(args.soak_minutes),
    ]
    command = "python benchmarks/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    header = [
        "# Benchmark results", "",
        f"Produced by `{command}` on {dt.date.today().isoformat()} in {(time.time() - started) / 60:.0f} "
        f"minutes. Machine: {machine()}. The machine is shared and noisy: figures are medians with "
        "(min–max) over repeats, and every comparison is a ratio against a baseline run in the same "
        "process run, on the same machine, at the same time.", ""]
    results = ROOT / "RESULTS.md"
    before = results.read_text() if results.exists() else ""
    kept = before[before.index(MUTATION):] if MUTATION in before else ""  # written after a mutmut run
    results.write_text("\n".join(header + sections) + ("\n" + kept if kept else ""))
    print(results.read_text())


if __name__ == "__main__":
    main()
