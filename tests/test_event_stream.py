"""The Redis stream event sink, against a real redis-server: one entry per event, trimmed by age,
spooled to the local files while the stream is unreachable and shipped when it is back, and read
back (exported to daily files, train's --events) with every acknowledged event exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import redis as sync_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from adserve.cli import DEMO_CONFIG
from adserve.config import load_config
from adserve import retention
from adserve.events import EventLog, export, local_copy, log_files, open_reader, read_events
from adserve.events.redis_stream import STREAM_KEY, StreamSink
from adserve.server.app import SERVER, create_app

from .conftest import start_redis
from .live import free_port
from .test_accounting import page
from .test_cli import adserve, clicks, elsewhere, fails  # noqa: F401  (elsewhere: a fixture)

pytestmark = pytest.mark.redis


def entries(url: str, key: str = STREAM_KEY) -> list[tuple[str, dict]]:
    """(writer, event) of every stream entry, duplicates included, in stream order."""
    with sync_redis.Redis.from_url(url) as client:
        return [(fields[b"w"].decode(), orjson.loads(fields[b"e"])) for _, fields in client.xrange(key)]


def unique(events: list[dict]) -> list[dict]:
    """What a reader keeps: the first copy of each event id."""
    seen: set[str] = set()
    return [e for e in events if not (e["event_id"] in seen or seen.add(e["event_id"]))]


@pytest.fixture
def key() -> str:
    return f"t{uuid.uuid4().hex}:events"


async def test_each_event_is_one_entry_with_its_own_id(redis_url, tmp_path, key):
    sink = StreamSink(redis_url, EventLog(tmp_path, "r1"), key=key)
    try:
        await sink.write({"type": "decision", "user": "a"})
        await sink.write({"type": "click", "ts": 5.0}, {"type": "impression", "ts": 6.0})
    finally:
        await sink.aclose()
    written = entries(redis_url, key)
    assert [(w, e["type"]) for w, e in written] == [("r1", "decision"), ("r1", "click"), ("r1", "impression")]
    ids = [e["event_id"] for _, e in written]
    assert len(set(ids)) == 3 and all(i.startswith("r1:") for i in ids)
    assert not log_files(tmp_path)  # nothing went through the spool


async def test_writes_waiting_together_share_a_round_trip(redis_url, tmp_path, key):
    """Concurrent writes are pipelined: Redis reads them in far fewer reads than writes."""
    sink = StreamSink(redis_url, EventLog(tmp_path), key=key)
    await sink.write({"type": "click", "token": "first"})  # connected

    def reads() -> int:
        with sync_redis.Redis.from_url(redis_url) as client:
            return client.info("stats")["total_reads_processed"]

    before = reads()
    try:
        await asyncio.gather(*(sink.write({"type": "click", "token": str(n)}) for n in range(50)))
    finally:
        await sink.aclose()
    assert reads() - before < 10
    assert sorted(int(e["token"]) for _, e in entries(redis_url, key) if e["token"] != "first") == list(range(50))


async def test_entries_older_than_the_retention_are_trimmed(redis_url, tmp_path, key):
    old_ms = int((time.time() - 3 * 86400) * 1000)
    with sync_redis.Redis.from_url(redis_url) as client:
        for n in range(300):  # three of Redis's blocks of 100 entries, all three days old
            client.xadd(key, {"w": "old", "e": b"{}"}, id=f"{old_ms}-{n}")
    sink = StreamSink(redis_url, EventLog(tmp_path), retention_days=2, key=key)
    try:
        await sink.write({"type": "click"})
    finally:
        await sink.aclose()
    assert [w for w, _ in entries(redis_url, key)] == ["main"]


async def test_a_write_whose_reply_is_lost_is_spooled_shipped_and_read_once(redis_url, tmp_path, key):
    """The XADD reached Redis but its reply did not come back: the event is spooled with the same
    id, shipped again, and the stream's second copy is dropped by the exporter."""
    sink = StreamSink(redis_url, EventLog(tmp_path / "spool"), key=key)
    sent = sink._send

    async def reply_lost(lines, now):
        await sent(lines, now)
        raise RedisConnectionError("connection reset")

    sink._send = reply_lost
    try:
        await sink.write({"type": "impression", "token": "t1"})
        assert sink.down and sink.failing is False
        await sink.write({"type": "impression", "token": "t2"})  # down: straight to the spool
        del sink._send
        await sink.ship()
        assert not sink.down
        await sink.write({"type": "impression", "token": "t3"})
    finally:
        await sink.aclose()
    raw = [e for _, e in entries(redis_url, key)]
    assert [e["token"] for e in raw] == ["t1", "t1", "t2", "t3"]
    assert raw[0]["event_id"] == raw[1]["event_id"]
    out = tmp_path / "archive"
    first = export(redis_url, out, key)
    assert (first.written, first.duplicates) == (3, 1)
    assert [e["token"] for e in read_events(log_files(out))] == ["t1", "t2", "t3"]
    with sync_redis.Redis.from_url(redis_url) as client:  # a later entry repeating an exported one
        client.xadd(key, {"w": "main", "e": orjson.dumps(raw[0])})
    again = export(redis_url, out, key)  # resumes after the last exported entry
    assert (again.written, again.duplicates) == (0, 1)
    assert [p.name for p in log_files(out)] == [p.name for p in log_files(tmp_path / "spool")]


async def test_a_spool_left_by_a_crash_is_shipped_at_the_next_start(redis_url, tmp_path, key):
    before = EventLog(tmp_path, "main")
    before.append({"type": "click", "token": "from-the-file-sink"})  # history before the stream: stays local
    before.close()
    sink = StreamSink(redis_url, EventLog(tmp_path), key=key)
    assert not sink.down
    sink.down = True  # the stream went away, then the process died with these in the spool
    await sink.write({"type": "click", "token": "a"}, {"type": "click", "token": "b"})
    await sink.aclose()
    restarted = StreamSink(redis_url, EventLog(tmp_path), key=key)
    try:
        assert restarted.down
        await restarted.ship()
        assert not restarted.down
    finally:
        await restarted.aclose()
    assert not StreamSink(redis_url, EventLog(tmp_path), key=key).down
    assert [e["token"] for _, e in entries(redis_url, key)] == ["a", "b"]


async def test_redis_killed_mid_load_loses_no_acknowledged_event_and_repeats_none(
        aiohttp_client, make_server, workdir, tmp_path):
    """Pages and pixels keep answering while the stream's Redis is killed (-9) and restarted; every
    answered page's decision and every answered pixel's impression is in the stream exactly once
    after dropping repeated ids, and nothing unanswered is."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port, tmp_path, durable=True)
    site = workdir / "config" / "site.yaml"
    site.write_text(site.read_text().replace("\nserver:\n", f"\nserver:\n  events: {url}\n  redis_url: {url}\n"))
    client = await aiohttp_client(create_app(make_server()))
    server = client.server.app[SERVER]
    answered: list[int] = []
    pixels: list[str] = []  # the token of each answered pixel

    async def reader(n: int) -> None:
        for visit in range(30):
            response = await client.post("/v1/slots", json=page(f"r{n}-{visit}"))
            assert response.status == 200, await response.text()
            answered.append(1)
            fill = (await response.json())["slots"]["s1"]
            if fill["fill"]:
                pixel = urlsplit(fill["impression_url"])
                if (await client.get(f"{pixel.path}?{pixel.query}")).status == 200:
                    pixels.append(server.signer.verify(parse_qs(pixel.query)["t"][0])["n"])

    async def until(condition) -> None:
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the condition never came true")

    load = asyncio.gather(*(reader(n) for n in range(8)))
    try:
        await until(lambda: len(answered) >= 40)
        redis.kill()
        redis.wait(timeout=10)
        await until(lambda: len(answered) >= 120)
        assert server.events.down
        assert "event_stream" in (await (await client.get("/healthz")).json())["failing"]
        redis = start_redis(port, tmp_path, durable=True)  # back, with what its append-only file kept
        await load
        await until(lambda: not server.events.down)
        stream = unique([e for _, e in entries(url)])
    finally:
        redis.kill()
        redis.wait(timeout=10)
    spooled = list(read_events(log_files(server.events.folder)))
    assert spooled and len(spooled) < len(stream)  # some went through the spool, most straight
    kinds = Counter(e["type"] for e in stream if not e.get("reconciled"))
    assert kinds["decision"] == len(answered) == 240
    impressions = [e["token"] for e in stream if e["type"] == "impression" and not e.get("reconciled")]
    assert sorted(impressions) == sorted(pixels) and len(set(pixels)) == len(pixels) > 0


def test_train_and_export_read_the_stream(redis_url, elsewhere):
    url = redis_url.rsplit("/", 1)[0] + "/5"  # a database of its own: the commands use the default key
    with sync_redis.Redis.from_url(url) as client:
        client.flushdb()

    async def write() -> None:
        sink = StreamSink(url, EventLog(elsewhere / "spool"))
        try:
            await sink.write(*clicks(6, 5))
        finally:
            await sink.aclose()

    asyncio.run(write())
    trained = adserve("train", "--config", str(DEMO_CONFIG), "--events", url, "--out", "m.npz", cwd=elsewhere)
    assert trained.returncode == 0, trained.stderr
    assert "trained on 30 events" in trained.stdout and (elsewhere / "m.npz").exists()
    assert open_reader(url, elsewhere / "var" / "stream-export").is_dir()
    archive = [adserve("export-events", "--config", str(DEMO_CONFIG), "--events", url, "--out", "archive",
                       cwd=elsewhere) for _ in range(2)]
    assert "exported 30 events" in archive[0].stdout and "exported 0 events" in archive[1].stdout
    assert sum(1 for _ in read_events(log_files(elsewhere / "archive"))) == 30
    fails(adserve("export-events", "--config", str(DEMO_CONFIG), "--events", f"redis://127.0.0.1:{free_port()}/0",
                  "--out", "archive", cwd=elsewhere), 1, "event stream", "Redis running")


async def test_recent_reads_this_writers_events_from_stream_and_spool_once(redis_url, tmp_path, key):
    """What a reconcile settles after a state outage: hits may sit in the stream (only the state
    store was down) or in the spool (the stream was down too)."""
    other = StreamSink(redis_url, EventLog(tmp_path / "other", "r2"), key=key)
    sink = StreamSink(redis_url, EventLog(tmp_path / "r1", "r1"), key=key)
    try:
        await other.write({"type": "click", "ts": 100.0, "token": "not-mine"})
        await sink.write({"type": "click", "ts": 50.0, "token": "too-early"},
                         {"type": "click", "ts": 100.0, "token": "in-stream"},
                         {"type": "decision", "ts": 100.0})
        sink.down = True
        await sink.write({"type": "impression", "ts": 101.0, "token": "in-spool"})
        await sink.ship()
        recent = await sink.recent(60.0, frozenset({"click", "impression"}))
    finally:
        await other.aclose()
        await sink.aclose()
    assert sorted(e["token"] for e in recent) == ["in-spool", "in-stream"]


async def test_start_up_warms_reader_history_from_the_whole_stream(redis_url, make_server, workdir, clock):
    url = redis_url.rsplit("/", 1)[0] + "/6"
    with sync_redis.Redis.from_url(url) as client:
        client.flushdb()
    site = workdir / "config" / "site.yaml"
    site.write_text(site.read_text().replace("\nserver:\n", f"\nserver:\n  events: {url}\n  redis_url: {url}\n"))
    elsewhere = StreamSink(url, EventLog(workdir / "other-host", "r2"))
    try:
        await elsewhere.write(*({"type": "decision", "user": f"u{n}", "page": "a1",
                                 "ts": clock().timestamp() - 60} for n in range(5)))
    finally:
        await elsewhere.aclose()
    server = make_server()
    try:
        assert server.replay.run(server.runtime.decider) == 5  # another replica's, not in this one's files
        assert not log_files(server.events.folder)
    finally:
        await server.events.aclose()
        await server.state.close()


def test_a_stream_without_shared_counters_is_a_config_error(workdir):
    site = workdir / "config" / "site.yaml"
    site.write_text(site.read_text().replace("\nserver:\n", "\nserver:\n  events: redis://127.0.0.1:6379/0\n"))
    loaded = load_config(workdir / "config")
    assert not loaded.ok and "needs server.redis_url" in str(loaded.errors[0])


def test_retention_also_expires_the_local_copy_of_the_stream(make_server, workdir, clock, redis_url):
    site = workdir / "config" / "site.yaml"
    site.write_text(site.read_text().replace(
        "\nserver:\n", f"\nserver:\n  events: {redis_url}\n  redis_url: {redis_url}\n  retention_days: 3\n"))
    server = make_server()
    copy = server.replay.folders[-1]
    old = EventLog(copy, "r2")
    old.append({"type": "click", "ts": clock().timestamp() - 10 * 86400})
    old.append({"type": "click", "ts": clock().timestamp()})
    old.close()
    server.expire_events()
    assert [p.name for p in log_files(copy)] == [f"events-{clock().date()}.r2.jsonl"]


def test_forget_erases_the_reader_from_the_stream_and_its_local_copy(redis_url, tmp_path):
    url = redis_url.rsplit("/", 1)[0] + "/7"
    with sync_redis.Redis.from_url(url) as client:
        client.flushdb()

    async def write() -> None:
        sink = StreamSink(url, EventLog(tmp_path / "spool"))
        try:
            await sink.write({"type": "decision", "user": "gone", "page": "a1"},
                             {"type": "click", "user": "stays", "item": "gone"},
                             {"type": "impression", "user": "gone", "counted": True})
        finally:
            await sink.aclose()

    asyncio.run(write())
    event_dir = tmp_path / "var" / "events"
    copy = open_reader(url, local_copy(url, event_dir))
    before = [e for _, e in entries(url)]
    erased = retention.forget("gone", event_dir, tmp_path / "model.npz", stream=url)
    assert erased.stream == 2 and erased.events == 2 and "from 2 events" in erased.report()
    after = [e for _, e in entries(url)]
    assert sorted(e["event_id"] for e in after) == sorted(e["event_id"] for e in before)
    assert [e["user"] for e in after] == ["stays", None, None] and after[0]["item"] == "gone"
    assert {e.get("user") for e in read_events(log_files(copy))} == {"stays", None}
