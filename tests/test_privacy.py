"""Consent end to end: the TC string decoder against the IAB library's strings, and the API.

The TC strings were made by the IAB Tech Lab's encoder (``tests/fixtures/tcf/make-strings.mjs``
says how); nothing is downloaded at test time.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from adserve.config import load_config
from adserve.server.app import SERVER, create_app
from adserve.tcf import TCStringError, purpose_consents

from .conftest import EXAMPLE_REQUEST, NOON_ISH, REPO
from .test_server import edit, local, logged

TCF = json.loads((Path(__file__).parent / "fixtures" / "tcf" / "strings.json").read_text())
READER = EXAMPLE_REQUEST["user"]["id"]
CAPPED = {c.id for c in load_config(REPO / "config", now=NOON_ISH).config.campaigns if c.frequency_cap}
MALFORMED = ["", "not a tc string", "CQuAh6A", "B" * 60, TCF["all-purposes"]["tc_string"][:30],
             TCF["all-purposes"]["tc_string"] + ".", TCF["all-purposes"]["tc_string"] + ".cA",
             "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "C" * 9000, "CQuAh6A=QuAh6AEsACBENAB", "é" * 40]


@pytest.mark.parametrize("case", sorted(TCF))
def test_decoder_reads_the_purposes_the_iab_encoder_wrote(case):
    made = TCF[case]
    expected = made["publisher_purpose_consents"]
    if expected is None:  # no publisher segment: the core segment's consents count
        expected = made["core_purpose_consents"]
    assert sorted(purpose_consents(made["tc_string"])) == expected


@pytest.mark.parametrize("text", MALFORMED)
def test_decoder_refuses_what_is_not_a_v2_string(text):
    with pytest.raises(TCStringError):
        purpose_consents(text)


def with_privacy(**privacy) -> dict:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["privacy"] = privacy
    return body


def tcf(case: str) -> dict:
    return with_privacy(gdpr_applies=True, tc_string=TCF[case]["tc_string"])


@pytest.fixture
async def served(aiohttp_client, make_server, workdir):
    """Post a body (with headers); returns (answer, tokens' payloads, the decision event, recs calls)."""
    server = make_server()
    client = await aiohttp_client(create_app(server))
    calls = []
    recommend = server.recommender.recommend

    def spy(strategy, user, *args):
        calls.append((strategy, user))
        return recommend(strategy, user, *args)

    server.recommender.recommend = spy

    async def post(body, headers=None):
        calls.clear()
        response = await client.post("/v1/slots", json=body, headers=headers or {})
        assert response.status == 200, await response.text()
        slots = (await response.json())["slots"]
        urls = [u for s in slots.values() for u in [s.get("impression_url")] + [
            i.get("impression_url") for i in s.get("items", [])] if u]
        payloads = [server.signer.verify(u.split("t=")[1]) for u in urls]
        return slots, payloads, logged(workdir, "decision")[-1], list(calls)
    post.client = client
    return post


def campaigns(slots: dict) -> set[int]:
    ids = {s["campaign_id"] for s in slots.values() if s.get("campaign_id")}
    return ids | {i["campaign_id"] for s in slots.values() for i in s.get("items", []) if i["sponsored"]}


def assert_anonymous(served_answer, label):
    slots, payloads, decision, recs = served_answer
    assert READER not in json.dumps(slots) and READER not in json.dumps(decision)
    assert all(p.get("u") is None for p in payloads) and all(p["k"] == label for p in payloads)
    assert decision["user"] is None and decision["consent"] == label
    assert recs and all(strategy != "personal" and user is None for strategy, user in recs)
    assert slots["s1"]["fill"] and not campaigns(slots) & CAPPED  # caps cannot be kept: not served


@pytest.mark.parametrize("body, headers, label", [
    (tcf("no-consent"), None, "none"),
    (tcf("storage-only"), None, "reader"),
    (tcf("publisher-storage-only"), None, "reader"),  # the publisher segment overrides the core's
    (tcf("publisher-no-consent"), None, "none"),
    (tcf("all-purposes"), {"Sec-GPC": "1"}, "none"),
    (with_privacy(gpc=True, gdpr_applies=True, tc_string=TCF["all-purposes"]["tc_string"]), None, "none"),
    (with_privacy(gdpr_applies=True), None, "none"),
] + [(with_privacy(gdpr_applies=True, tc_string=text), None, "none") for text in MALFORMED])
async def test_without_consent_the_reader_is_nowhere_and_ads_are_contextual(served, body, headers, label):
    assert_anonymous(await served(body, headers), label)


@pytest.mark.parametrize("privacy", [[], "yes", {"gdpr_applies": "true"}, {"tc_string": 5},
                                     {"gpc": "1"}, {"tc_string": ["CQ"]}])
async def test_a_malformed_privacy_object_counts_as_no_consent_never_a_400(served, privacy):
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["privacy"] = privacy
    assert_anonymous(await served(body), "none")


@pytest.mark.parametrize("body, label", [
    (tcf("all-purposes"), "reader+ads+content"),
    (tcf("publisher-all-purposes"), "reader+ads+content"),
    (with_privacy(gdpr_applies=False), "reader+ads+content"),
    (EXAMPLE_REQUEST, None),  # no signal at all: served as before
    (with_privacy(gpc=False), None),
])
async def test_with_consent_or_without_signal_serving_is_as_before(served, body, label):
    slots, payloads, decision, recs = await served(body)
    assert decision["user"] == READER and decision["consent"] == label
    assert slots["s1"]["campaign_id"] == 12174  # the capped campaign the example page gets
    assert all(p["u"] == READER and p.get("k") == label for p in payloads)
    assert ("personal", READER) in recs


async def test_ads_and_content_consents_are_separate(served):
    slots, payloads, decision, recs = await served(tcf("ads-not-content"))
    assert slots["s1"]["campaign_id"] == 12174 and decision["user"] is None
    assert {p["u"] for p in payloads if "c" in p} == {READER}
    assert {p["u"] for p in payloads if "its" in p} == {None}
    assert all(user is None and strategy != "personal" for strategy, user in recs)
    slots, payloads, decision, recs = await served(tcf("content-not-ads"))
    assert slots["s1"]["campaign_id"] != 12174 and decision["user"] == READER
    assert {p["u"] for p in payloads if "c" in p} == {None}
    assert ("personal", READER) in recs


async def test_site_can_require_consent_from_requests_without_signal(served, workdir):
    edit(workdir, "site.yaml", "  unique_advertiser_per_page: true\n",
         "  unique_advertiser_per_page: true\n  consent_required: true\n")
    await served.client.server.app[SERVER].reload_config()
    assert_anonymous(await served(EXAMPLE_REQUEST), "none")
    _, _, decision, _ = await served(tcf("all-purposes"))
    assert decision["user"] == READER


async def test_a_capped_campaign_may_choose_to_serve_without_consent(served, workdir):
    assert 12174 in CAPPED
    edit(workdir, "campaigns/display.yaml", "    frequency_cap: {count: 5, period: day}\n",
         "    frequency_cap: {count: 5, period: day, without_consent: serve}\n")
    await served.client.server.app[SERVER].reload_config()
    for _ in range(7):  # more than the cap of 5: without a reader there is no cap to keep
        slots, payloads, decision, _ = await served(tcf("no-consent"))
        assert slots["s1"]["campaign_id"] == 12174 and decision["user"] is None
        assert (await served.client.get(local(slots["s1"]["impression_url"]))).status == 200
    impressions = logged(workdir, "impression")
    assert len(impressions) == 7
    assert all(e["user"] is None and e["consent"] == "none" and e["counted"] for e in impressions)
