"""Screenshot of the demo article page, for the README.

Starts `adserve serve --demo` in a scratch folder (its own simulated history and model), opens
the page in Debian's headless Chromium through playwright, and writes a PNG.

    python scripts/screenshot.py [docs/demo-page.png]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.live import LiveServer  # noqa: E402  (the launcher the tests use)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


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
    with tempfile.TemporaryDirectory() as scratch, LiveServer(Path(scratch), options=("--demo",)) as server:
        asyncio.run(shoot(server.url + "/", out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
