"""Config load: a 10,000-campaign book read, validated and built, against libyaml's plain load.

    python benchmarks/bench_config.py

adserve's loader composes libyaml nodes (to keep file, line and column for every field), checks
each file's budget, builds the typed model and validates it. The baseline reads the same files
with ``yaml.load(..., Loader=CSafeLoader)`` into plain dicts, with no positions and no checks:
the least any YAML config can cost (with the cyclic
collector paused for both, as ``load_config`` does). Times are CPU seconds of this process (the load is
single-threaded; CPU time is steadier than wall time on a shared machine), medians over repeats.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

import yaml
from common import OUT, replace_section

from adserve.config import config_files, load_config
from world import write_config


def _cpu_seconds(work) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def _book(campaigns: int) -> Path:
    folder = OUT / f"config-{campaigns}"
    if not (folder / "config").exists():
        write_config(folder, campaigns)
    return folder / "config"


def _plain_load(config: Path) -> None:
    gc.disable()  # as load_config does: the collector would double the baseline's time
    try:
        for path in config_files(config):
            yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    finally:
        gc.enable()


def measure(campaigns: int, repeats: int) -> tuple[float, float]:
    """Median CPU seconds of (adserve's load, the plain load) of a ``campaigns`` book, alternating."""
    config = _book(campaigns)
    ours, plain = [], []
    for _ in range(repeats):
        result = []
        ours.append(_cpu_seconds(lambda: result.append(load_config(config))))
        assert result[0].ok and len(result[0].config.campaigns) >= campaigns, result[0].errors[:3]
        plain.append(_cpu_seconds(lambda: _plain_load(config)))
    return statistics.median(ours), statistics.median(plain)


def run(repeats: int = 3) -> str:
    rows = []
    for campaigns in (100, 10_000):
        ours, plain = measure(campaigns, repeats)
        rows.append(f"| {campaigns:,} | {ours:.2f} s | {plain:.2f} s | {ours / plain:.2f} |")
    return "\n".join([
        "### Config load", "",
        f"`python benchmarks/bench_config.py` (median of {repeats}, CPU seconds). adserve's load keeps "
        "file, line and column for every field, bounds each file's cost and validates the book; the "
        "baseline is libyaml's plain `yaml.load` of the same files into dicts (no positions, no checks; "
        "the garbage collector paused for both).",
        "", "| campaigns | adserve load_config | plain CSafeLoader load | ratio |", "|---:|---:|---:|---:|",
        *rows, ""])


if __name__ == "__main__":
    section = run(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    replace_section(section)
    print(section)
