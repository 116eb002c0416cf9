"""Consent end to end: the TC string decoder against the IAB library's strings, and the API.

The TC strings were made by the IAB Tech Lab's encoder (``tests/fixtures/tcf/make-strings.mjs``
says how); nothing is downloaded at test time.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest

from adserve import cli, retention
from adserve.config import load_config
from adserve.events import log_files, read_events
from adserve.model import Recs
from adserve.recs.artifact import ModelArtifact
from adserve.recs.matrix import cache_for, read_interactions
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
    (EXAMPLE_REQUEST, {"sec-gpc": " 1"}, "none"),
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


# -- retention and erasure ----------------------------------------------------------------------

def write_day(folder: Path, day: str, *events: dict) -> Path:
    path = folder / f"events-{day}.main.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps({"ts": 0, **e}) + b"\n" for e in events))
    return path


async def test_retention_deletes_old_event_files_and_their_parse_cache_at_start(
        aiohttp_client, make_server, workdir, clock):
    edit(workdir, "site.yaml", "server:\n", "server:\n  retention_days: 3\n")
    folder = workdir / "var" / "events"
    days = [(clock().date() - dt.timedelta(days=n)).isoformat() for n in range(6)]
    for day in days:
        write_day(folder, day, {"type": "decision", "user": "reader-42", "page": "p"})
    read_interactions(log_files(folder), Recs(), cache=cache_for(folder))  # fills the parse cache
    (folder / "catalog-updates.jsonl").write_text("{}\n")
    await aiohttp_client(create_app(make_server()))
    kept = sorted(p.name for p in folder.glob("events-*"))
    assert kept == sorted(f"events-{day}.main.jsonl" for day in days[:4])  # today and 3 full days
    assert {p.name.split(".jsonl")[0] + ".jsonl" for p in cache_for(folder).glob("*.npz")} == set(kept)
    assert (folder / "catalog-updates.jsonl").exists()


@pytest.fixture
async def history(served, workdir):
    """Two readers' page views, impressions and clicks, and a model that knows both."""
    for reader in (READER, "reader-7", READER):
        body = tcf("all-purposes")
        body["user"] = {"id": reader}
        slots, *_ = await served(body)
        for url in (slots["s1"]["impression_url"], slots["s1"]["click_url"],
                    slots["s3"]["items"][0]["click_url"]):
            await served.client.get(local(url), allow_redirects=False)
    rng = np.random.default_rng(0)
    ModelArtifact(user_ids=np.array([READER, "reader-7"]), item_ids=np.array(["a", "b"]),
                  user_factors=rng.random((2, 4), dtype=np.float32),
                  item_factors=rng.random((2, 4), dtype=np.float32),
                  user_top=np.array([[0, 1], [1, 0]], dtype=np.int32),
                  item_neighbors=np.array([[1, -1], [0, -1]], dtype=np.int32)).save(workdir / "var" / "model.npz")
    return served.client.server.app[SERVER]


def event_totals(workdir) -> dict:
    events = list(read_events(log_files(workdir / "var" / "events")))
    return {"events": len(events),
            "counted": sorted(repr((e["type"], e.get("campaign"), e.get("item"))) for e in events if e.get("counted")),
            "readers": {e.get("user") for e in events}}


async def test_forget_removes_the_reader_everywhere_and_keeps_totals(history, served, workdir, capsys):
    folder = workdir / "var" / "events"
    read_interactions(log_files(folder), Recs(), cache=cache_for(folder))  # training's parse cache
    before = event_totals(workdir)
    assert before["readers"] == {READER, "reader-7"}
    mine = sum(e.get("user") == READER for e in read_events(log_files(folder)))

    assert cli.main(["forget", READER, "--config", str(workdir / "config")]) == 0
    said = capsys.readouterr().out
    assert f"forgot reader {READER}" in said and f"from {mine} events in 1 files" in said
    assert "removed the reader's row" in said

    after = event_totals(workdir)
    assert after["readers"] == {None, "reader-7"}
    assert (after["events"], after["counted"]) == (before["events"], before["counted"])
    assert not [p for p in workdir.rglob("*") if p.is_file() and READER.encode() in p.read_bytes()]
    users = read_interactions(log_files(folder), Recs(), cache=cache_for(folder)).users
    assert set(users) == {"reader-7"}
    assert ModelArtifact.load(workdir / "var" / "model.npz").user_ids.tolist() == ["reader-7"]

    await history.reload_model()  # the server still appends to the file it had open
    body = tcf("all-purposes")
    body["user"] = {"id": "reader-7"}
    await served(body)
    assert event_totals(workdir)["events"] == after["events"] + 1


def test_forget_rewrites_only_that_readers_user_field(workdir):
    folder = workdir / "var" / "events"
    path = write_day(folder, "2026-11-20", {"type": "click", "user": "x", "item": "x"},
                     {"type": "click", "user": "xy", "page": "x"})
    with open(path, "ab") as f:
        f.write(b'{"ts": 1, "type": "decision", "user" : "x", "page": "p"}\n')
    size = path.stat().st_size
    erased = retention.forget("x", folder, workdir / "var" / "model.npz")
    assert (erased.events, erased.files, erased.model) == (2, [str(path)], None)
    assert path.stat().st_size == size
    assert [(e["user"], e.get("item"), e.get("page")) for e in read_events([path])] == [
        ("", "x", None), ("xy", None, "x"), ("", None, "p")]


@pytest.mark.redis
async def test_forget_deletes_the_readers_frequency_counters_in_redis(redis_url, workdir):
    from adserve.ledger import Ledger
    from adserve.state import RedisState

    reader, other = f"r-{uuid.uuid4().hex}", f"r-{uuid.uuid4().hex}"
    config = load_config(workdir / "config", now=NOON_ISH).config
    ledger = Ledger(config.site.timezone)
    capped = [c for c in config.campaigns if c.frequency_cap]
    state = RedisState(redis_url)
    for user in (reader, other, f"{reader}:cap:{reader}"):
        for campaign in capped:
            assert await state.settle(f"bill:{user}:{campaign.id}", 60, None,
                                      ledger.charge(campaign, "impression", user, ledger.moment(NOON_ISH)))
    await state.close()
    erased = await asyncio.to_thread(retention.forget, reader, workdir / "var" / "events",
                                     workdir / "var" / "model.npz", redis_url)
    assert len(erased.counters) == len(capped) and all(reader in key for key in erased.counters)
    state = RedisState(redis_url)
    keys = [limit.key for campaign in capped for limit in ledger.limits(campaign, other, ledger.moment(NOON_ISH))]
    assert all(value == 1 for value in await state.get_many([k for k in keys if ":cap:" in k]))
    await state.close()
