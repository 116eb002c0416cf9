"""Shared benchmark plumbing: loopback load with wrk, medians, the machine, RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
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


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path | None, connections: int = 32, seconds: int = 10) -> Load:
    """One bounded wrk run against a loopback URL."""
    assert url.startswith("http://127.0.0.1:"), "load only ever goes to loopback"
    command = [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
               "--timeout", "5s", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                p50_ms=_ms(latency["50"]), p99_ms=_ms(latency["99"]),
                non_2xx=int(non_2xx.group(1)) if non_2xx else 0)


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
