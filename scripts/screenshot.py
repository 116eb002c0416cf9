"""Screenshots of the demo article page for the README, and its layout shift.

Starts `adserve serve --demo` in a scratch folder (its own simulated history and model), opens
the page in Debian's headless Chromium through playwright, writes three PNGs (desktop, mobile,
and desktop before the slot answer: the reserved space and skeleton tiles) and prints the
cumulative layout shift of a page view on each viewport, measured as the browser tests do.

    python scripts/screenshot.py [docs/]
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.live import LiveServer  # noqa: E402  (the launcher the tests use)
from tests.test_browser import (ALL_SETTLED, CHROMIUM_ARGS, NEXT_FRAMES, VIEWPORTS,  # noqa: E402
                                held_page, layout_shift)

RUNS = 5  # CLS is reported as the median of this many page views


async def shoot(url: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=shutil.which("chromium") or
                                                   "/usr/bin/chromium", args=CHROMIUM_ARGS)
        page, answer, _ = await held_page(browser, url, "desktop")
        await page.set_viewport_size({"width": 1280, "height": 1400})
        await page.screenshot(path=str(out / "demo-reserved.png"))
        answer.set()
        await page.wait_for_function(ALL_SETTLED)
        await page.wait_for_load_state("networkidle")  # images
        await page.screenshot(path=str(out / "demo-page.png"))
        mobile = await browser.new_page(viewport=VIEWPORTS["mobile"])
        await mobile.goto(url)
        await mobile.wait_for_function(ALL_SETTLED)
        await mobile.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # lazy thumbnails
        await mobile.wait_for_load_state("networkidle")
        await mobile.evaluate("window.scrollTo(0, 0)")  # offscreen frames are not painted
        await mobile.evaluate(NEXT_FRAMES)
        await mobile.screenshot(path=str(out / "demo-mobile.png"), full_page=True,
                                clip={"x": 0, "y": 0, "width": 390, "height": 1600})
        for viewport in VIEWPORTS:
            runs = [(await layout_shift(browser, url, viewport))[0] for _ in range(RUNS)]
            print(f"CLS {viewport} {VIEWPORTS[viewport]}: median {statistics.median(runs):.3f} "
                  f"of {RUNS} (max {max(runs):.3f})")
        await browser.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs").resolve()
    with tempfile.TemporaryDirectory() as scratch, LiveServer(Path(scratch), options=("--demo",)) as server:
        asyncio.run(shoot(server.url + "/", out))
    print(f"wrote {out}/demo-page.png, demo-mobile.png, demo-reserved.png")


if __name__ == "__main__":
    main()
