"""Screenshot of the demo article page, for the README.

Starts `adserve serve --demo` in a scratch folder (its own simulated history and model), opens
the page in Debian's headless Chromium through playwright, and writes a PNG.

    python scripts/screenshot.py [docs/demo-page.png]
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up")


async def shoot(url: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=shutil.which("chromium") or
                                                   "/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1400})
        await page.goto(url)
        await page.wait_for_selector("[data-adserve-slot=you-might-like][data-adserve-state]")
        await page.wait_for_timeout(800)  # images
        await page.screenshot(path=str(out))
        await browser.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs" / "demo-page.png").resolve()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(REPO / "config", Path(scratch) / "config")
        server = subprocess.Popen([sys.executable, "-m", "adserve.cli", "serve", "--demo",
                                   "--port", str(port)], cwd=scratch)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz")
            asyncio.run(shoot(f"http://127.0.0.1:{port}/", out))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
