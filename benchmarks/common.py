"""Shared benchmark plumbing: loopback load with wrk, medians, the machine, RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from tests.live import LiveServer, free_port, wait_until_up  # noqa: E402,F401  (shared with the tests)

OUT = ROOT / "out"


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int = 0  # completed in the run (those in flight when it stops are not)
    seconds: float = 0.0  # the run's length as wrk timed it


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path | None, connections: int = 32, seconds: int = 10,
        script_args: tuple[str, ...] = ()) -> Load:
    """One bounded wrk run against a loopback URL (``script_args`` reach the script's ``init``)."""
    assert url.startswith("http://127.0.0.1:"), "load only ever goes to loopback"
    command = [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
               "--timeout", "5s", url]
    if script:
        command[1:1] = ["-s", str(script)]
    if script_args:
        command += ["--", *script_args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                p50_ms=_ms(latency["50"]), p99_ms=_ms(latency["99"]),
                non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
                **_done(re.search(r"(\d+) requests in ([\d.]+\w+),", out).groups()))


def _done(counted: tuple[str, str]) -> dict:
    """wrk's "N requests in 2.00s" (a run of a minute or more reads "1.00m")."""
    requests, took = counted
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", took).groups()
    return {"requests": int(requests), "seconds": float(value) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads) has used so far, from /proc/PID/stat
    (clock ticks: 10 ms resolution at the usual 100 Hz)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that have been waited for (e.g. finished wrk
    runs): the difference across one run is that run's CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class BareServer:
    """benchmarks/bare_server.py in its own process: the baseline handler."""

    def __init__(self, body: bytes, content_type: str = "application/json") -> None:
        OUT.mkdir(exist_ok=True)
        self.body_file = OUT / f"bare-body-{os.getpid()}"
        self.body_file.write_bytes(body)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.content_type = content_type

    def __enter__(self) -> "BareServer":
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bare_server.py"), str(self.port),
                                         str(self.body_file), self.content_type])
        wait_until_up(self.url + "/", self.process, 10)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def median_spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def replace_section(section: str) -> None:
    """Put one benchmark's section (starting '### Title') into RESULTS.md in place of its old one,
    so a benchmark run alone updates its numbers without rerunning the others."""
    path = ROOT / "RESULTS.md"
    title = section.splitlines()[0]
    text = path.read_text()
    start = text.index(title) if title in text else len(text)
    end = text.find("\n### ", start + 1)
    path.write_text(text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else ""))
