"""A real ``adserve serve`` process on a loopback port, for crash, overload, fuzz and load runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from adserve.cli import DEMO_CONFIG

REPO = Path(__file__).resolve().parent.parent
SECRET = "live-test-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_public_url(config: Path, url: str) -> Path:
    """``config`` with ``server.public_url`` set, which serving outside demo mode needs."""
    site = config / "site.yaml"
    if "public_url:" not in site.read_text():
        site.write_text(site.read_text().replace("\nserver:\n", f"\nserver:\n  public_url: {url}\n", 1))
    return config


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60, log=lambda: "") -> None:
    """Poll ``url`` until it answers; fail early if ``process`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class LiveServer:
    """Runs the server in ``folder`` (holding config/, var/ appears beside it)."""

    def __init__(self, folder: Path, port: int | None = None, config: Path | None = None,
                 options: tuple[str, ...] = (), env: dict | None = None) -> None:
        self.folder = Path(folder)
        self.options = options
        self.env = env or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        if not (self.folder / "config").exists():
            shutil.copytree(config or DEMO_CONFIG, self.folder / "config")
        with_public_url(self.folder / "config", self.url)

    def start(self, timeout: float = 60) -> "LiveServer":
        env = {**os.environ, "ADSERVE_SECRET": SECRET, "PYTHONPATH": str(REPO), **self.env}
        self.log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adserve.cli", "serve", "--config", "config", "--port", str(self.port),
             *self.options],
            cwd=self.folder, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_up(self.url + "/healthz", self.process, timeout,
                      lambda: (self.folder / "server.log").read_text()[-2000:])
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final fsync."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
