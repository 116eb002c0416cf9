"""The report page in headless Chromium: it draws its charts with nothing fetched and nothing run,
and a hostile campaign name stays text."""

from __future__ import annotations

import asyncio

import pytest

from adserve.server.app import create_app

from .test_browser import browser  # noqa: F401  (fixture)
from .test_report_page import HOSTILE, TOKEN, live_run
from .test_server import edit

pytestmark = pytest.mark.browser


@pytest.fixture
async def report_url(aiohttp_client, make_server, workdir, clock, monkeypatch):
    monkeypatch.setenv("ADSERVE_REPORT_TOKEN", TOKEN)
    edit(workdir, "campaigns/display.yaml", "name: Harbor Bank winter savings", f"name: '{HOSTILE}'")
    client = await aiohttp_client(create_app(make_server()))
    await live_run(client, clock, readers=30)
    return str(client.make_url("/report"))


async def open_report(browser, url: str, token: str | None = TOKEN):  # noqa: F811
    context = await browser.new_context(viewport={"width": 1100, "height": 900},
                                        extra_http_headers={"Authorization": f"Bearer {token}"} if token else {})
    fetched, dialogs, errors = [], [], []
    context.on("request", lambda request: fetched.append(request.url))
    page = await context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    response = await page.goto(url)
    return page, response, fetched, dialogs, errors


async def test_the_report_draws_its_charts_with_nothing_fetched_or_run(browser, report_url):  # noqa: F811
    page, response, fetched, dialogs, errors = await open_report(browser, report_url)
    assert response.status == 200
    assert fetched == [report_url]  # no CDN, no script, no font, no image
    charts = page.locator("svg")
    assert await charts.count() == 2
    for n in range(2):
        box = await charts.nth(n).bounding_box()
        assert box["width"] > 600 and box["height"] > 60
    link = page.get_by_role("link", name=HOSTILE)  # the hostile name, shown as text
    assert await link.count() == 1
    await link.click()
    await page.wait_for_url("**/report/campaigns/12174")
    assert await page.locator("h1").text_content() == f"{HOSTILE} (#12174)"
    assert await page.locator("svg polyline").count() >= 1  # delivery against the plan
    assert await page.locator("svg line.interval").count() == 2  # CTR of variants A and B
    assert dialogs == [] and errors == []
    assert await page.evaluate("document.scripts.length") == 0


async def test_without_the_token_the_browser_gets_401(browser, report_url):  # noqa: F811
    _, response, _, _, _ = await open_report(browser, report_url, token=None)
    assert response.status == 401
