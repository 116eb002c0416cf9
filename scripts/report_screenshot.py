"""Screenshots of the report page for the README (``docs/report-*.png``).

A week of generated traffic goes through the real server (in process, its clock moved a few
hours per step): pages for a few hundred readers a day, their pixels, and clicks at a CTR that
depends on the variant (B better), so the page has delivery, fill and A/B verdicts to show.
Then Debian's headless Chromium opens ``/report`` and one campaign's page with the token.

    python scripts/report_screenshot.py [docs/]
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adserve.cli import DEMO_CONFIG  # noqa: E402
from adserve.config import load_config  # noqa: E402
from adserve.server.app import AdServer, create_app  # noqa: E402
from tests.conftest import EXAMPLE_REQUEST  # noqa: E402
from tests.test_browser import CHROMIUM_ARGS  # noqa: E402

TOKEN = "screenshot-token"
CTR = {"A": 0.04, "B": 0.09}
SECTIONS = ("politics", "world", "business", "tech")


async def traffic(client: TestClient, clock: list[dt.datetime], days: int, readers: int) -> None:
    rng = random.Random(3)
    for day in range(days):
        for n in range(readers):
            clock[0] += dt.timedelta(seconds=86400 / readers)
            body = copy.deepcopy(EXAMPLE_REQUEST)
            body["user"] = {"id": f"reader-{day}-{n}"}
            body["page"]["section"] = rng.choice(SECTIONS)
            body["device"] = rng.choice(("desktop", "desktop", "mobile", "tablet"))
            answer = await (await client.post("/v1/slots", json=body)).json()
            for slot in answer["slots"].values():
                if slot.get("fill"):
                    await client.get(_local(slot["impression_url"]))
                    if rng.random() < CTR.get(slot.get("variant"), 0.03):
                        await client.get(_local(slot["click_url"]), allow_redirects=False)


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def main(out: Path) -> None:
    os.environ["ADSERVE_REPORT_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        shutil.copytree(DEMO_CONFIG, "config")
        clock = [dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=7)]
        loaded = load_config("config", now=clock[0])
        server = AdServer("config", loaded, os.urandom(32), clock=lambda: clock[0])
        async with TestClient(TestServer(create_app(server))) as client:
            await traffic(client, clock, days=7, readers=300)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS)
                context = await browser.new_context(viewport={"width": 1100, "height": 900},
                                                    extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
                page = await context.new_page()
                for path, name in (("/report", "report-page.png"), ("/report/campaigns/12174", "report-campaign.png")):
                    await page.goto(str(client.make_url(path)))
                    await page.screenshot(path=str(out / name), full_page=True)
                await browser.close()
    print(f"wrote {out}/report-page.png, report-campaign.png")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs").resolve()))
