"""Where a slot request's time goes: py-spy samples the live server under wrk load.

    pip install py-spy && python benchmarks/profile_slots.py

Prints the functions with the most samples (own time, and time including callees) for the
request path of bench_slots; see PROFILE.md for what it showed and what was changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections import Counter

from bench_slots import LUA, PAGE_REQUEST
from common import OUT, LiveServer, wrk
from world import build


def main(seconds: int = 8, top: int = 25) -> None:
    folder = OUT / "world-1000"
    if not (folder / "var" / "model.npz").exists():
        build(folder, campaigns=1000, items=100_000)
    script = OUT / "profile.lua"
    script.write_text(LUA % json.dumps(PAGE_REQUEST))
    samples = OUT / "profile.txt"
    with LiveServer(folder) as server:
        record(server.url, server.process.pid, script, seconds, samples)
    print(summary(samples, top))


def record(url: str, pid: int, script, seconds: int, samples) -> None:
    """py-spy's raw samples of the server ``pid`` for ``seconds`` under wrk's load (32 connections)."""
    load = threading.Thread(target=wrk, args=(url + "/v1/slots", script, 32, seconds + 4))
    load.start()
    subprocess.run([shutil.which("py-spy") or "py-spy", "record", "-f", "raw", "-o", str(samples),
                    "-d", str(seconds), "-r", "200", "--pid", str(pid)], check=True, capture_output=True)
    load.join()


def summary(samples, top: int) -> str:
    """The ``top`` frames by own time, and by time including callees, as shares of all samples."""
    own, total, count = Counter(), Counter(), 0
    for line in samples.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = [re.sub(r" \(/.*?/(site-packages|python3\.\d+)/", " (", f) for f in stack.split(";")]
        count += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            total[frame] += int(n)
    return "\n".join([f"{count} samples", "", "own time:",
                      *(f"{n / count:6.1%}  {frame}" for frame, n in own.most_common(top)),
                      "", "including callees:",
                      *(f"{n / count:6.1%}  {frame}" for frame, n in total.most_common(top * 2)[top // 2:])])


if __name__ == "__main__":
    main()
