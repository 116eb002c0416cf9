"""Recommendations: matrix building, training on simulated logs, serving, fallbacks, hot swap."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
import shutil
import time

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from adserve.catalog import Catalog, Item
from adserve.events import EventLog, log_files
from adserve.model import Recs
from adserve.recs.artifact import ArtifactError, ModelArtifact
from adserve.recs.popularity import Popularity
from adserve.recs.evaluate import evaluate
from adserve.recs.matrix import build_matrix, read_interactions
from adserve.recs.recommender import Recommender
from adserve.recs.simulate import SimulationSpec, simulate
from adserve.recs import train as recs_train
from adserve.recs.train import train
from adserve.server.app import create_app

from .conftest import EXAMPLE_REQUEST
from .test_server import local

RECS = Recs(factors=16, iterations=10)
DAY = 1_795_996_800.0  # a UTC midnight


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two weeks of simulated readers, their catalog, and a model trained on them."""
    folder = tmp_path_factory.mktemp("sim")
    catalog = Catalog(journal=folder / "events" / "catalog-updates.jsonl")
    log = EventLog(folder / "events", writer="simulated")
    counts = simulate(log, SimulationSpec(users=800, days=14), catalog=catalog)
    log.close()
    artifact = train(folder / "events", RECS, folder / "model.npz")
    return folder, counts, artifact


def write_log(folder, *events) -> None:
    log = EventLog(folder)
    for event in events:
        log.append(event)  # each into its own day's file
    log.close()


def test_matrix_sums_weights_skips_bots_and_keeps_orientation(tmp_path):
    write_log(tmp_path, {"ts": 1.0, "type": "click", "user": "u1", "item": "a", "counted": True},
              {"ts": 86402.0, "type": "click", "user": "u1", "item": "a", "counted": True},  # next day
              {"ts": 3.0, "type": "decision", "user": "u2", "page": "b"},
              {"ts": 4.0, "type": "impression", "user": "u2", "items": ["a", "c"], "counted": True},
              {"ts": 5.0, "type": "click", "user": "bot", "item": "c", "bot": True},
              {"ts": 6.0, "type": "decision", "user": None, "page": "c"})
    recs = Recs(click_weight=1.0, view_weight=0.5, impression_weight=0.1)
    data = build_matrix(read_interactions(log_files(tmp_path), recs))
    assert isinstance(data.matrix, csr_matrix) and data.matrix.dtype == np.float32
    assert list(data.user_ids) == ["u1", "u2"] and list(data.item_ids) == ["a", "b", "c"]
    np.testing.assert_allclose(data.matrix.toarray(), [[2.0, 0, 0], [0.1, 0.5, 0.1]], rtol=1e-6)


def weights_of(tmp_path, *events, recs=Recs(click_weight=1.0, view_weight=0.5, impression_weight=0.1)):
    write_log(tmp_path, *events)
    data = build_matrix(read_interactions(log_files(tmp_path), recs))
    return {(u, i): data.matrix[r, c] for r, u in enumerate(data.user_ids.tolist())
            for c, i in enumerate(data.item_ids.tolist()) if data.matrix[r, c]}


def test_replayed_click_tokens_weigh_one_click(tmp_path):
    """Only counted hits train, as only counted hits are billed: a replay is logged, not counted."""
    replays = [{"ts": DAY + n, "type": "click", "user": "u1", "item": "pushed", "token": "n1:0",
                "counted": n == 0} for n in range(50)]
    shown = [{"ts": DAY + n, "type": "impression", "user": "u1", "items": ["pushed"], "token": "n2",
              "counted": n == 0} for n in range(50)]
    assert weights_of(tmp_path, *replays, *shown) == {("u1", "pushed"): pytest.approx(1.1)}


def test_a_readers_reads_of_an_article_are_capped_per_day(tmp_path):
    """Page reads come from slot requests, which anyone can send: 50 forged reads weigh two."""
    views = [{"ts": DAY + 60 * n, "type": "decision", "user": "u1", "page": "pushed"} for n in range(50)]
    next_day = {"ts": DAY + 86400, "type": "decision", "user": "u1", "page": "pushed"}
    other = {"ts": DAY + 1, "type": "decision", "user": "u2", "page": "pushed"}
    assert weights_of(tmp_path, *views, next_day, other) == {
        ("u1", "pushed"): pytest.approx(3 * 0.5), ("u2", "pushed"): pytest.approx(0.5)}


def test_a_readers_counted_clicks_on_an_article_are_capped_per_day(tmp_path):
    """Every page answer signs a fresh widget token: a reader who asks for 50 pages and clicks the
    same article in each has 50 counted clicks, which must not weigh 50 in "You Might Like"."""
    clicks = [{"ts": DAY + 60 * n, "type": "click", "user": "u1", "item": "pushed", "token": f"n{n}:0",
               "counted": True} for n in range(50)]
    next_day = {"ts": DAY + 86400, "type": "click", "user": "u1", "item": "pushed", "token": "m:0",
                "counted": True}
    assert weights_of(tmp_path, *clicks, next_day) == {("u1", "pushed"): pytest.approx(3.0)}


def test_files_with_their_own_vocabularies_merge_into_one_matrix(tmp_path):
    """Each day file codes ids in its own first-seen order; the merge must still line rows up."""
    days = [[("u2", "b"), ("u1", "a"), ("u2", "a")], [("u3", "c"), ("u1", "b"), ("u2", "b")]]
    for day, clicks in enumerate(days):
        log = EventLog(tmp_path, writer=f"w{day}")
        log.append(*({"ts": day * 86400.0 + n, "type": "click", "user": u, "item": i, "counted": True}
                     for n, (u, i) in enumerate(clicks)))
        log.close()
    data = read_interactions(log_files(tmp_path), RECS)
    assert len(log_files(tmp_path)) == 2
    assert data.users.tolist() == [u for clicks in days for u, _ in clicks]
    assert data.items.tolist() == [i for clicks in days for _, i in clicks]
    merged = build_matrix(data)
    assert list(merged.user_ids) == ["u1", "u2", "u3"] and list(merged.item_ids) == ["a", "b", "c"]
    np.testing.assert_allclose(merged.matrix.toarray(), [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    first_day = build_matrix(data.select(data.ts < 86400))  # u3 and c unused: left out
    assert list(first_day.user_ids) == ["u1", "u2"] and list(first_day.item_ids) == ["a", "b"]
    np.testing.assert_allclose(first_day.matrix.toarray(), [[1, 0], [1, 1]])


def test_simulated_log_has_every_event_kind_and_bots(simulated):
    folder, counts, artifact = simulated
    assert counts["decision"] > 5000 and counts["click"] > 1000 and counts["impression"] > 5000
    assert artifact.meta["data"]["users"] <= 800  # bots are not readers
    assert not any(u.startswith("crawler") for u in artifact.user_ids.tolist())


def test_artifact_metadata_and_tables(simulated):
    _, _, artifact = simulated
    meta = artifact.meta
    assert meta["params"]["factors"] == 16 and meta["data"]["nonzeros"] > 0
    assert artifact.user_factors.shape == (len(artifact.user_ids), 16)
    assert artifact.user_top.shape[1] == RECS.top_n
    for i in range(20):  # an item is never its own neighbour
        assert i not in artifact.item_neighbors[i].tolist()


def test_personal_and_related_beat_popular(simulated):
    folder, _, _ = simulated
    scores = {s.strategy: s for s in evaluate(read_interactions(log_files(folder / "events"), RECS),
                                              RECS, k=6)}
    assert scores["personal"].precision > 1.3 * scores["popular"].precision
    assert scores["related"].precision > 1.2 * scores["popular"].precision
    assert scores["personal"].coverage > scores["popular"].coverage


def test_corrupt_or_incompatible_artifacts_are_refused(simulated, tmp_path):
    _, _, artifact = simulated
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError):
        ModelArtifact.load(tmp_path / "garbage.npz")
    old = copy.copy(artifact)
    old.meta = {**artifact.meta}
    old.save(tmp_path / "old.npz")
    data = dict(np.load(tmp_path / "old.npz"))
    data["meta"] = np.array('{"format": "adserve-recs-model", "version": 0}')
    np.savez(tmp_path / "v0.npz", **data)
    with pytest.raises(ArtifactError, match="v0"):
        ModelArtifact.load(tmp_path / "v0.npz")
    broken = copy.copy(artifact)
    broken.item_neighbors = artifact.item_neighbors + len(artifact.item_ids)
    broken.save(tmp_path / "broken.npz")
    with pytest.raises(ArtifactError, match="outside"):
        ModelArtifact.load(tmp_path / "broken.npz")


@pytest.fixture
async def recs_client(aiohttp_client, make_server, simulated, workdir):
    folder, _, _ = simulated
    shutil.copytree(folder / "events", workdir / "var" / "events")
    shutil.copy(folder / "model.npz", workdir / "var" / "model.npz")
    server = make_server()
    client = await aiohttp_client(create_app(server))
    return client, server


def recs_request(user: str | None, page: str = "world-0001", placement="you-might-like", count=None):
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["page"] = {"item_id": page, "section": page.split("-")[0]}
    body["user"] = {"id": user} if user else {}
    slot = {"id": "w", "placement": placement}
    if count:
        slot["count"] = count
    body["slots"] = [slot]
    return body


async def widget(client, body) -> dict:
    response = await client.post("/v1/slots", json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["slots"]["w"]


def organic(answer: dict) -> list[str]:
    return [i["item_id"] for i in answer["items"] if not i["sponsored"]]


def without_exploration(server) -> None:
    """No random fresh picks: every organic item then comes from the strategy's own list."""
    server.recommender.recs = dataclasses.replace(server.recommender.recs, explore_share=0.0)


async def until(condition, guard: float = 120.0) -> None:
    """Wait for ``condition``; the guard only stops a hang, no duration is asserted."""
    deadline = time.monotonic() + guard
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


async def test_reader_with_history_gets_personal_items(recs_client):
    client, server = recs_client
    without_exploration(server)
    model = server.recommender.model
    known = model.artifact.user_ids.tolist()[0]
    page = model.item_ids[0]
    mine = await widget(client, recs_request(known, page))
    anonymous = await widget(client, recs_request(None, page))
    assert mine["strategy"] == "personal" and anonymous["strategy"] == "related"
    assert len(organic(mine)) == 4 and organic(anonymous)
    assert set(organic(mine)) <= set(model.personal(known, ()))  # the reader's own top-N
    assert set(organic(anonymous)) <= set(model.related(page))   # the page's neighbours


async def test_sponsored_items_fill_configured_positions(recs_client):
    client, _ = recs_client
    items = (await widget(client, recs_request("reader-1")))["items"]
    assert len(items) == 6
    assert [i["sponsored"] for i in items] == [False, True, False, False, True, False]
    for item in (items[1], items[4]):
        assert item["campaign_id"] in (12300, 12310) and item["impression_url"] and item["title"]
    assert items[1]["campaign_id"] != items[4]["campaign_id"]


@pytest.mark.parametrize("articles, shown", [
    (4, [False, True, False, False, True, False]),
    (2, [False, True, False, True]),  # too few articles: a native past them follows them
    (1, [False, True, True]),
    (0, [True, True]),
])
async def test_natives_keep_their_positions_when_articles_run_short(recs_client, articles, shown):
    client, server = recs_client
    without_exploration(server)
    for item in list(server.catalog.items.values())[articles:]:
        item.live = False  # taken down in place: only ``articles`` are left to recommend
    items = (await widget(client, recs_request("reader-1")))["items"]
    assert [i["sponsored"] for i in items] == shown


async def test_current_clicked_and_dead_items_are_never_shown(recs_client):
    client, server = recs_client
    reader = server.recommender.model.artifact.user_ids.tolist()[5]
    page = server.recommender.model.item_ids[3]
    first = await widget(client, recs_request(reader, page, "related-articles", 4))
    clicked = first["items"][0]
    response = await client.get(local(clicked["click_url"]), allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == clicked["url"]
    server.catalog.items[first["items"][1]["item_id"]].live = False
    for _ in range(5):
        again = await widget(client, recs_request(reader, page, "related-articles", 4))
        shown = {i["item_id"] for i in again["items"]}
        assert page not in shown and len(shown) == 4
        assert clicked["item_id"] not in shown and first["items"][1]["item_id"] not in shown


async def test_fallback_chain_without_a_model(aiohttp_client, make_server):
    server = make_server()
    client = await aiohttp_client(create_app(server))
    response = await widget(client, recs_request("reader-1"))
    assert response["strategy"] == "popular" and len(response["items"]) == 6


async def test_a_page_view_heats_its_article_at_the_servers_clock(aiohttp_client, make_server, clock):
    """Reads and clicks share one clock (the injected one in tests, replays of the log too)."""
    server = make_server()
    client = await aiohttp_client(create_app(server))
    heated = []
    record = server.recommender.record
    server.recommender.record = lambda kind, user, item, ts: heated.append((kind, item, ts)) or record(
        kind, user, item, ts)
    page = next(iter(server.catalog.items))
    await widget(client, recs_request("reader-1", page))
    assert heated == [("decision", page, clock().timestamp())]


async def test_new_reader_is_folded_in_from_recent_clicks(recs_client):
    client, server = recs_client
    newcomer = "reader-brand-new"
    assert newcomer not in server.recommender.model.user_index
    before = await widget(client, recs_request(newcomer, page="not-in-model-1"))
    assert before["strategy"] == "popular"
    for item in before["items"][:3]:
        if not item["sponsored"]:
            await client.get(local(item["click_url"]), allow_redirects=False)
    after = await widget(client, recs_request(newcomer, page="not-in-model-1"))
    assert after["strategy"] == "personal"


async def test_widget_entries_leave_the_kept_cards_alone(recs_client):
    """The catalog's kept cards are shared by every widget: an answer's entry (its click URL,
    its position) must be a dict of its own, and a card never gains a widget's click URL."""
    client, server = recs_client
    without_exploration(server)
    model = server.recommender.model
    reader, page = model.artifact.user_ids.tolist()[0], model.item_ids[0]
    first = await widget(client, recs_request(reader, page))
    again = await widget(client, recs_request(reader, page))
    assert organic(first) == organic(again)
    assert first["items"][0]["click_url"] != again["items"][0]["click_url"]  # each widget's own token
    assert server.catalog._cards and all(set(entry) == {"item_id", "title", "url", "image_url", "section", "sponsored"}
                                         for _item, _base, entry in server.catalog._cards.values())


async def test_an_upserted_article_shows_as_it_now_is_in_the_next_widget(recs_client):
    """Widget items are built from per-article parts worked out once: an upsert must show at once."""
    client, server = recs_client
    without_exploration(server)
    server.cms_token = "cms"
    model = server.recommender.model
    reader, page = model.artifact.user_ids.tolist()[0], model.item_ids[0]
    first = (await widget(client, recs_request(reader, page)))["items"][0]
    item = server.catalog.items[first["item_id"]]
    changed = {"url": f"/articles/moved-{item.item_id}", "title": "A new headline", "section": item.section,
               "image_url": "https://img.example/new.jpg", "published": item.published}
    response = await client.put(f"/v1/items/{item.item_id}", json=changed, headers={"Authorization": "Bearer cms"})
    assert response.status == 200
    again = (await widget(client, recs_request(reader, page)))["items"][0]
    assert again["item_id"] == first["item_id"] and again["title"] == "A new headline"
    assert again["url"].endswith(changed["url"]) and again["image_url"] == changed["image_url"]
    response = await client.post("/v1/slots", json=recs_request(reader, page), headers={"Host": "other.example"})
    elsewhere = (await response.json())["slots"]["w"]["items"][0]  # no public_url: the request's host
    assert elsewhere["url"] == f"http://other.example{changed['url']}"


def one_reader_model(reader: str, items: list[str]) -> ModelArtifact:
    """A model that knows one reader, whose top-N is ``items``."""
    rng = np.random.default_rng(0)
    return ModelArtifact(user_ids=np.array([reader]), item_ids=np.array(items),
                         user_factors=rng.random((1, 4), dtype=np.float32),
                         item_factors=rng.random((len(items), 4), dtype=np.float32),
                         user_top=np.arange(len(items), dtype=np.int32)[None, :],
                         item_neighbors=np.full((len(items), len(items)), -1, dtype=np.int32),
                         meta={"params": {"algorithm": "als"}})


async def test_model_hot_swap_and_refusal_of_a_corrupt_file(recs_client, workdir):
    client, server = recs_client
    without_exploration(server)
    first = server.recommender.model
    model_path = workdir / "var" / "model.npz"
    model_path.write_bytes(b"corrupt")
    await server.reload_model()
    assert server.recommender.model is first
    assert "not a readable model artifact" in server.status["model"]["error"]
    before = organic(await widget(client, recs_request("reader-1")))
    recent = time.time() - 48 * 3600
    unseen = [i for i, item in server.catalog.items.items()
              if i not in before and item.live and (item.published or 0) > recent][:6]
    one_reader_model("reader-1", unseen).save(model_path)
    await server.reload_model()
    assert server.recommender.model is not first
    after = await widget(client, recs_request("reader-1"))
    assert after["strategy"] == "personal" and len(organic(after)) == 4
    assert set(organic(after)) <= set(unseen)  # the new model's picks, none of the old answer's


async def test_model_file_watch_picks_up_a_new_artifact(recs_client, workdir):
    client, server = recs_client
    without_exploration(server)
    first = server.recommender.model
    await asyncio.to_thread(train, workdir / "var" / "events", Recs(factors=4, iterations=2),
                            workdir / "var" / "model.npz")
    await until(lambda: server.recommender.model is not first)
    await served_from(client, server.recommender.model)


async def served_from(client, model) -> None:
    """A reader of ``model`` is served from their top-N in it."""
    reader = model.artifact.user_ids.tolist()[1]
    answer = await widget(client, recs_request(reader))
    assert answer["strategy"] == "personal" and len(organic(answer)) == 4
    assert set(organic(answer)) <= set(model.personal(reader, ()))


def test_parse_cache_is_used_and_invalidated_by_growth(tmp_path):
    from adserve.events import ReadReport
    from adserve.recs.matrix import cache_for

    log = EventLog(tmp_path)
    log.append({"ts": 1.0, "type": "click", "user": "u1", "item": "a", "counted": True})
    log.close()
    path = log_files(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(b'{"torn": \n')
    cache = cache_for(tmp_path)
    first = ReadReport()
    assert len(read_interactions(log_files(tmp_path), RECS, first, cache).users) == 1
    assert len(list(cache.glob("*.npz"))) == 1
    again = ReadReport()
    assert len(read_interactions(log_files(tmp_path), RECS, again, cache).users) == 1
    assert (again.events, again.skipped) == (first.events, first.skipped) == (1, [(str(path), 2)])
    log = EventLog(tmp_path)
    log.append({"ts": 2.0, "type": "click", "user": "u2", "item": "b", "counted": True})
    log.close()
    grown = read_interactions(log_files(tmp_path), RECS, None, cache)
    assert sorted(grown.users.tolist()) == ["u1", "u2"]
    assert len(list(cache.glob("*.npz"))) == 1  # the stale entry is replaced


async def test_scheduled_retrain_writes_and_swaps_a_model(recs_client, workdir):
    client, server = recs_client
    without_exploration(server)
    first = server.recommender.model
    before = (workdir / "var" / "model.npz").stat().st_mtime_ns
    await server.retrain()
    assert (workdir / "var" / "model.npz").stat().st_mtime_ns != before
    await until(lambda: server.recommender.model is not first)  # the model watcher swaps it in
    await served_from(client, server.recommender.model)



async def test_scheduled_retraining_leaves_the_serving_process_alone(recs_client, workdir, monkeypatch):
    """Reading the log is Python line by line: in a thread of the serving process it held the
    interpreter lock for seconds, and the event loop waited for it at every socket call."""
    client, server = recs_client

    def in_the_serving_process(*args, **kwargs):
        raise AssertionError("the log was read in the serving process")
    monkeypatch.setattr(recs_train, "read_log", in_the_serving_process)
    before = (workdir / "var" / "model.npz").stat().st_mtime_ns
    await server.retrain()
    assert (workdir / "var" / "model.npz").stat().st_mtime_ns != before

async def test_fresh_articles_get_their_exploration_share(recs_client):
    client, server = recs_client
    fresh = {"url": "https://news.example/just-in", "title": "Just in", "section": "world",
             "published": time.time()}
    server.cms_token = "cms"
    assert (await client.put("/v1/items/just-in", json=fresh, headers={"Authorization": "Bearer cms"})).status == 200
    server.recommender._fresh_at = -1e18  # the catalog scan is cached for 30 s
    fresh_ids = set(server.recommender.fresh_items())
    assert "just-in" in fresh_ids
    server.recommender.model = None  # popularity alone would never show an unclicked article
    fresh_slots, just_in = 0, 0
    for n in range(200):
        items = [i["item_id"] for i in (await widget(client, recs_request(f"reader-{n}")))["items"]]
        fresh_slots += sum(i in fresh_ids for i in items)
        just_in += "just-in" in items
    # explore_share 0.15 x 4 organic slots (2 of 6 are sponsored) = 0.6 exploration slots a widget
    assert fresh_slots >= 0.6 * 200 * 0.7 and just_in > 0


# -- the current article, on every strategy path ---------------------------------------------------
PAGE = "page"
OTHERS = [f"other-{n}" for n in range(8)]


def hand_made_recommender(recs: Recs = Recs(explore_share=0.0), fresh: tuple[str, ...] = ()):
    """A catalog and a model in which the page being read is the best candidate of every path:
    the reader's top-N, the neighbours of the article they clicked last, their fold-in scores and
    popularity. Training never lists an article as its own neighbour; these lists can hold it."""
    now = time.time()
    catalog = Catalog({i: Item(item_id=i, url=f"/articles/{i}", title=i,
                               published=now if i in fresh else now - 3600 * 30)
                       for i in [PAGE, *OTHERS]})
    item_ids = np.array([PAGE, *OTHERS])
    others = list(range(1, len(item_ids)))
    factors = np.array([[3.0, 0.0]] + [[1.0, 0.0]] + [[0.0, 0.1]] * (len(OTHERS) - 1), dtype=np.float32)
    artifact = ModelArtifact(
        user_ids=np.array(["known"]), item_ids=item_ids,
        user_factors=np.ones((1, 2), dtype=np.float32), item_factors=factors,
        user_top=np.array([[0, *others]], dtype=np.int32),
        item_neighbors=np.array([[-1] * len(item_ids)] + [[0, *others]] * len(OTHERS), dtype=np.int32),
        meta={"params": {"algorithm": "als"}})
    recommender = Recommender(catalog, recs, random.Random(2))
    recommender.use_model(artifact)
    for _ in range(10):
        recommender.record("decision", "someone", PAGE, now)  # the page is also the most read
    return recommender


@pytest.mark.parametrize("strategy, user, history, path", [
    ("personal", "known", (), "personal"),            # the reader's precomputed top-N
    ("personal", "newcomer", (OTHERS[0],), "personal"),  # fold-in of a reader newer than the model
    ("related", None, (), "popular"),                 # the page has no neighbours: popularity
    ("related", "clicker", (OTHERS[0],), "related"),  # neighbours of the last clicked article
    ("popular", None, (), "popular"),
])
def test_the_current_article_is_never_recommended(strategy, user, history, path):
    recommender = hand_made_recommender()
    for item in history:
        recommender.record("click", user, item, time.time())
    rec = recommender.recommend(strategy, user, PAGE, 3, set())
    assert rec.strategy == path and len(rec.items) == 3
    assert PAGE not in rec.items and not set(history) & set(rec.items)


def test_the_current_article_is_never_recommended_without_a_model_or_as_a_fresh_pick():
    recommender = hand_made_recommender(Recs(explore_share=1.0), fresh=(PAGE, OTHERS[3]))
    recommender.model = None
    for _ in range(20):
        rec = recommender.recommend("personal", "reader", PAGE, 3, set())
        assert PAGE not in rec.items and OTHERS[3] in rec.items  # the one other fresh article



def test_a_fresh_pick_draws_what_choice_draws_from_the_unbanned_fresh_articles():
    """A widget's one fresh pick is drawn without copying the fresh list less the banned articles:
    it must be the article, and use the random numbers, that ``choice`` of that copy would, for
    banned sets holding none, some or all of them, and follow the fresh list when it is refreshed
    (a new list: positions kept from the old one would pick another article, or a banned one)."""
    recommender = Recommender(Catalog(), Recs(), random.Random())
    draws = random.Random(5)
    fresh = [f"f{n}" for n in range(12)]
    for _ in range(400):
        if draws.random() < 0.3:  # refreshed: another list of other articles in another order
            fresh = [f"f{n}" for n in draws.sample(range(40), draws.randrange(13))]
        banned = {f"f{n}" for n in range(40) if draws.random() < draws.choice((0.0, 0.3, 1.0))} | {"page"}
        seed = draws.random()
        recommender.rng.seed(seed)
        reference = random.Random(seed)
        left = [item for item in fresh if item not in banned]
        assert recommender._fresh_pick(fresh, banned) == ([reference.choice(left)] if left else [])
        assert recommender.rng.random() == reference.random()  # as many numbers drawn

# -- memoized candidate lists ------------------------------------------------------------------
def test_memoized_candidates_follow_the_clock_the_catalog_the_config_and_the_model_at_once():
    """A reader's (and an article's) candidates are worked out once and reused: ageing past
    ``max_age_hours``, an upsert, a changed setting and a model swap must all show on the next
    widget. No heat, no exploration: the answer is the model's order, so stale candidates show."""
    start = time.time()
    now = [start]
    ages = {"a0": 1, "a1": 100, "a2": 167.5, "a3": 200}  # hours; max_age_hours is 168
    catalog = Catalog({i: Item(item_id=i, url=f"/articles/{i}", title=i, published=start - age * 3600)
                       for i, age in ages.items()})
    recommender = Recommender(catalog, Recs(explore_share=0.0), random.Random(1), clock=lambda: now[0])
    recommender.use_model(one_reader_model("reader", ["a2", "a3", "a1", "a0"]))

    def widget_of(count: int) -> list[str]:
        rec = recommender.recommend("personal", "reader", None, count, set())
        assert rec.strategy == "personal"
        return rec.items

    assert widget_of(3) == widget_of(3) == ["a2", "a1", "a0"]
    now[0] += 3600  # a2 is now too old
    assert widget_of(2) == ["a1", "a0"]
    catalog.upsert(dataclasses.replace(catalog.items["a3"], published=now[0] - 7200), persist=False)
    assert widget_of(3) == ["a3", "a1", "a0"]
    recommender.recs = dataclasses.replace(recommender.recs, max_age_hours=500.0)
    assert widget_of(4) == ["a2", "a3", "a1", "a0"]
    recommender.use_model(one_reader_model("reader", ["a1", "a0"]))
    assert widget_of(2) == ["a1", "a0"]
    recommender.model = None
    assert recommender.recommend("personal", "reader", None, 2, set()).strategy == "popular"


def test_memoized_candidates_are_bounded_least_recently_used_first(monkeypatch):
    monkeypatch.setattr("adserve.recs.recommender.CANDIDATES_KEPT", 2)
    recommender = hand_made_recommender()
    for page in (OTHERS[1], OTHERS[2], OTHERS[1], OTHERS[3]):  # an anonymous reader: the page's neighbours
        assert recommender.recommend("related", None, page, 2, set()).strategy == "related"
    assert list(recommender.model.candidates) == [("related", OTHERS[1], ()), ("related", OTHERS[3], ())]


# -- heat order ------------------------------------------------------------------------------------
def test_heat_orders_candidates_hottest_first_and_ties_keep_their_order():
    popularity = Popularity(half_life_hours=24.0)
    assert popularity.hottest_first(["x", "y", "z"]) == ["x", "y", "z"]  # nothing read yet
    for item in ("a", "a", "b", "c"):
        popularity.add(item, DAY)
    assert popularity.hottest_first(["x", "c", "y", "a", "b", "z"]) == ["a", "c", "b", "x", "y", "z"]
    popularity.add("b", DAY + 3600 * 24 * 800)  # far enough on for the sums to be rescaled
    assert popularity.hottest_first(["x", "c", "a", "b"]) == ["b", "a", "c", "x"]
