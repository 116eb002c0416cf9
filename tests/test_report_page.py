"""GET /report: only with the report token (404 while it is unset), an HTML page of inline SVG
charts with no script, every config name escaped."""

from __future__ import annotations

import copy

import pytest

from adserve.server.app import create_app

from .conftest import EXAMPLE_REQUEST
from .test_server import edit, local, post_slots

TOKEN = "report-token-for-tests"
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


async def live_run(client, clock, readers: int = 12) -> None:
    """Pages for a few readers over three days; their ads' pixels fire, every third ad is clicked."""
    for n in range(readers):
        if n and n % (readers // 3) == 0:
            clock.advance(days=1)
        body = copy.deepcopy(EXAMPLE_REQUEST)
        body["user"] = {"id": f"reader-{n}"}
        for slot in (await post_slots(client, body)).values():
            if slot.get("fill"):
                await client.get(local(slot["impression_url"]))
                if n % 3 == 0:
                    await client.get(local(slot["click_url"]), allow_redirects=False)


@pytest.fixture
async def reporting(aiohttp_client, make_server, workdir, clock, monkeypatch):
    monkeypatch.setenv("ADSERVE_REPORT_TOKEN", TOKEN)
    edit(workdir, "campaigns/display.yaml", "name: Harbor Bank winter savings", f"name: '{HOSTILE}'")
    client = await aiohttp_client(create_app(make_server()))
    await live_run(client, clock)
    return client


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_the_report_is_off_without_its_token(aiohttp_client, make_server, monkeypatch):
    monkeypatch.delenv("ADSERVE_REPORT_TOKEN", raising=False)
    client = await aiohttp_client(create_app(make_server()))
    for path in ("/report", "/report/campaigns/12174"):
        assert (await client.get(path, headers=bearer())).status == 404


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer \udcff"}])
async def test_the_report_needs_its_token(reporting, headers):
    response = await reporting.get("/report", headers=headers)
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert HOSTILE not in await response.text()


async def test_the_page_has_three_charts_no_script_and_escaped_names(reporting):
    response = await reporting.get("/report", headers=bearer())
    assert response.status == 200 and response.content_type == "text/html"
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no script
    page = await response.text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in page
    assert page.count("<svg") == 2  # fill rate, CTR by variant (delivery is per campaign)
    assert "Fill rate per placement" in page and "CTR by variant" in page
    assert 'href="/report/campaigns/12174"' in page and "12174-300x250 · A" in page
    one = await reporting.get("/report/campaigns/12174", headers=bearer())
    text = await one.text()
    assert one.status == 200 and "Delivered impressions per day against the even-pacing plan" in text
    assert "<polyline" in text and "&lt;script&gt;" in text and "<script" not in text


@pytest.mark.parametrize("path", ["/report/campaigns/424242", "/report/campaigns/abc",
                                  "/report/campaigns/99999999999999999999999"])
async def test_an_unknown_campaign_is_404(reporting, path):
    assert (await reporting.get(path, headers=bearer())).status == 404


async def test_a_server_with_nothing_logged_yet_reports_so(aiohttp_client, make_server, monkeypatch):
    monkeypatch.setenv("ADSERVE_REPORT_TOKEN", TOKEN)
    client = await aiohttp_client(create_app(make_server()))
    for path in ("/report", "/report/campaigns/12174"):
        response = await client.get(path, headers=bearer())
        assert response.status == 200 and "no events yet" in await response.text()
