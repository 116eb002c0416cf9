"""The loader under a real TCF CMP (IAB's @iabtechlabtcf/cmpapi, vendored in tests/fixtures/tcf)
and under Global Privacy Control: without storage consent nothing reaches localStorage and no
event carries a reader id; with every purpose the page behaves as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_browser import browser, events, site  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
FIXTURES = Path(__file__).parent / "fixtures" / "tcf"
CMPAPI = (FIXTURES / "cmpapi.bundle.js").read_text()
TC_STRINGS = json.loads((FIXTURES / "strings.json").read_text())
TOP_ONLY = "if (window.top === window) {%s}"  # creatives' frames get no CMP of their own


def real_cmp(case: str) -> str:
    """The IAB CMP API on the page, answering with the case's TC string a moment after load."""
    return CMPAPI + TOP_ONLY % (
        "var cmp = new IabTcf.CmpApi(300, 2, true);"
        f"setTimeout(function () {{ cmp.update({json.dumps(TC_STRINGS[case]['tc_string'])}, false); }}, 150);")


SILENT_CMP = TOP_ONLY % "window.__tcfapi = function () {};"  # a CMP that never answers
GPC = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"


async def open_with(browser, url: str, init_script: str):  # noqa: F811
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_init_script(init_script)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("[data-testid=you-might-like][data-adserve-state]", state="attached")
    return page


async def seen_impression(page, workdir):
    """Wait until the first slot in view fired its pixel; its impression events."""
    await page.wait_for_selector("[data-adserve-viewed=true]", state="attached")
    for _ in range(50):
        if impressions := events(workdir, "impression"):
            return impressions
        await page.wait_for_timeout(50)
    return []


@pytest.mark.parametrize("init_script", [real_cmp("no-consent"), real_cmp("publisher-no-consent"),
                                         SILENT_CMP, GPC, GPC + real_cmp("all-purposes")],
                         ids=["no-consent", "publisher-no-consent", "silent-cmp", "gpc", "gpc-over-all"])
async def test_without_storage_consent_nothing_is_stored_or_logged_about_the_reader(
        browser, site, workdir, init_script):  # noqa: F811
    base, _ = site
    page = await open_with(browser, base + "/", init_script)
    assert await page.get_attribute("[data-testid=you-might-like]", "data-adserve-state") == "filled"
    assert await page.evaluate("localStorage.length") == 0
    assert await page.evaluate("window.adserve.reader()") is None
    [decision] = events(workdir, "decision")
    assert decision["user"] is None and decision["consent"] == "none"
    impressions = await seen_impression(page, workdir)
    assert impressions and all(e["user"] is None and e["consent"] == "none" for e in impressions)


async def test_with_every_purpose_the_reader_is_kept_as_before(browser, site, workdir):  # noqa: F811
    base, _ = site
    page = await open_with(browser, base + "/", real_cmp("all-purposes"))
    reader = await page.evaluate("localStorage.getItem('adserve_reader')")
    assert reader and await page.evaluate("window.adserve.reader()") == reader
    [decision] = events(workdir, "decision")
    assert decision["user"] == reader and decision["consent"] == "reader+ads+content"
    impressions = await seen_impression(page, workdir)
    assert impressions and all(e["user"] == reader for e in impressions)
