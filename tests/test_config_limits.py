"""A config folder is untrusted input: no file under the size limit makes `check` or a reload run away.

Costs are asserted as counts (nodes charged, problems kept, bytes answered) and as the traced
allocation peak, which is deterministic, never as wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import tracemalloc

import pytest
import yaml

from adserve import yamlload
from adserve.cli import main
from adserve.config import config_files, load_config
from adserve.server.app import SERVER

from . import config_bombs
from .conftest import ADMIN, NOON_ISH
from .test_config import GOOD_CAMPAIGN

PEAK_BYTES = 64 << 20  # "tens of MB": the unfixed loader took 400 MB on a 13 KB file
LISTED = yamlload.MAX_KEPT + 2  # the kept errors, one stopping a whole file, the "... and N more" line


def write(workdir, text: str, name: str = "bomb.yaml") -> None:
    (workdir / "config" / "campaigns" / name).write_text(text)


def load_traced(workdir):
    """(load result, traced allocation peak in bytes) of loading the private config."""
    tracemalloc.start()
    try:
        return load_config(workdir / "config", now=NOON_ISH), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_bounded(errors) -> None:
    assert 0 < len(errors) <= LISTED
    assert all(len(e.message) < 2 * yamlload.CLIP_CHARS and len(e.path) < 2 * yamlload.CLIP_CHARS
               for e in errors)


def unknown_key_campaigns(copies: int) -> str:
    """A mapping of 10 unknown keys, used as each of ``copies`` campaigns through an alias."""
    keys = ", ".join(f"k{i}: 1" for i in range(10))
    return f"u: &u {{{keys}}}\ncampaigns: [" + ", ".join(["*u"] * copies) + "]\n"


@pytest.mark.parametrize("copies, refused", [(90, False), (91, True)])
def test_unknown_keys_and_each_alias_expansion_count_against_the_budget(workdir, monkeypatch,
                                                                        copies, refused):
    # Charged: the document, its keys 'u' and 'campaigns', the list (4), then per copy the
    # mapping and its 10 keys (11): 994 nodes for 90 copies, 1,005 for 91.
    monkeypatch.setattr(yamlload, "MAX_NODES", 1000)
    write(workdir, unknown_key_campaigns(copies))
    result = load_config(workdir / "config", now=NOON_ISH)
    over = [e for e in result.errors if "expands to more than 1000 nodes" in e.message]
    assert len(over) == refused
    if refused:
        assert over[0].file.endswith("bomb.yaml") and over[0].line == 1
    assert_bounded(result.errors)


@pytest.mark.parametrize("bomb", sorted(config_bombs.ALL))
def test_hostile_file_is_refused_within_bounds(workdir, bomb):
    text = config_bombs.ALL[bomb]()
    assert len(text.encode()) <= yamlload.MAX_FILE_BYTES
    write(workdir, text)
    result, peak = load_traced(workdir)
    assert not result.ok
    assert any(e.file.endswith("bomb.yaml") for e in result.errors)
    assert_bounded(result.errors)
    assert peak < PEAK_BYTES, f"{peak / 1e6:.0f} MB"


def test_oversized_file_is_refused_unread(workdir):
    write(workdir, "# " + "x" * yamlload.MAX_FILE_BYTES + "\n")
    result = load_config(workdir / "config", now=NOON_ISH)
    assert [e.message for e in result.errors] == [f"file is larger than {yamlload.MAX_FILE_BYTES} bytes"]


def test_broken_files_do_not_add_up(workdir, monkeypatch):
    """Each file that does not build gives its memory back: five cost what one costs."""
    monkeypatch.setattr(yamlload, "MAX_NODES", 10_000)
    write(workdir, config_bombs.known_fields(), "bomb-0.yaml")
    one, peak_one = load_traced(workdir)
    for i in range(1, 5):
        write(workdir, config_bombs.known_fields(), f"bomb-{i}.yaml")
    five, peak_five = load_traced(workdir)
    assert sum("more than 10000 nodes" in e.message for e in five.errors) == 5
    assert peak_five < 1.3 * peak_one, (peak_one, peak_five)


def test_errors_are_capped_per_run_and_the_rest_counted(workdir, capsys):
    unknown = GOOD_CAMPAIGN + "    colour: red\n"
    write(workdir, "campaigns:\n" + "".join(f"  - {{x{i}: 1}}\n" for i in range(30)), "a.yaml")
    for i in range(150):
        write(workdir, unknown.replace("id: 500", f"id: {1000 + i}").replace("t-300", f"t-{i}"),
              f"b-{i:03}.yaml")
    result = load_config(workdir / "config", now=NOON_ISH)
    assert len(result.errors) == yamlload.MAX_KEPT + 1
    closing = result.errors[-1].message
    # a.yaml: 30 x (unknown key + 6 missing fields) = 210; the list is full inside it
    assert closing.startswith(f"... and {210 - yamlload.MAX_KEPT} more errors, not listed")
    unread = len(config_files(workdir / "config")) - 1
    assert closing.endswith(f"{unread} more files not read (fix these errors first)")
    assert result.problems.counts["error"] == 210
    assert main(["check", str(workdir / "config")]) == 1
    assert capsys.readouterr().out.endswith("\n210 error(s), 0 warning(s)\n")


def test_a_book_of_ten_thousand_campaigns_over_many_files_loads(workdir):
    """The node budget is per file: the book as a whole is far over it, and loads."""
    campaign = textwrap.indent(textwrap.dedent("""\
        - id: {id}
          name: Campaign {id}
          advertiser: Advertiser {id}
          flight: {{start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z}}
          price: {{model: cpm, amount: 2}}
          creatives: [{{id: c{id}, size: 300x250, landing_url: 'https://a.example/', variants: [{{id: A, image_url: /a.svg}}]}}]
        """), "  ")
    for f in range(20):
        write(workdir, "campaigns:\n" + "".join(campaign.format(id=100_000 + f * 500 + c)
                                                for c in range(500)), f"book-{f:02}.yaml")
    nodes = sum(1 for path in (workdir / "config").rglob("book-*.yaml")
                for event in yaml.parse(path.read_text(), Loader=yaml.CSafeLoader)
                if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)))
    assert nodes > 2 * yamlload.MAX_NODES
    result = load_config(workdir / "config", now=NOON_ISH)
    assert result.ok, result.errors[:3]
    assert sum(c.id >= 100_000 for c in result.config.campaigns) == 10_000


async def test_server_keeps_its_config_through_hostile_files(client, workdir):
    """A reload takes the loader's bounded path (all hostile files are loaded above)."""
    server = client.server.app[SERVER]
    good = server.runtime
    for name in ("unknown_keys", "deep_nesting", "long_keys"):  # reported, crashes libyaml, longest
        write(workdir, config_bombs.ALL[name]())
        await server.reload_config()
        assert server.runtime is good, name
        details = await (await client.get("/v1/config/status", headers=ADMIN)).read()
        assert len(details) < 128 << 10, (name, len(details))
        status = json.loads(details)["config"]
        assert status["error_count"] > 0 and len(status["errors"]) <= LISTED
        anonymous = await client.get("/v1/config/status")
        assert anonymous.status == 200 and len(await anonymous.read()) < 1024
        counts = (await anonymous.json())["config"]  # the watcher may have reloaded meanwhile
        assert counts["error_count"] > 0 and "errors" not in counts


async def test_status_details_need_the_admin_token(client, workdir):
    write(workdir, GOOD_CAMPAIGN.replace("size: 300x250", "size: 1x1"))
    await client.server.app[SERVER].reload_config()
    anonymous = await (await client.get("/v1/config/status")).json()
    assert anonymous == {"config": {key: anonymous["config"][key] for key in (
        "ok", "applied", "checked_at", "error_count", "warning_count", "active_file_count",
        "active_campaigns")}, "model": {"loaded": False}}
    assert anonymous["config"]["error_count"] == 1
    admin = await (await client.get("/v1/config/status", headers=ADMIN)).json()
    assert "unknown size '1x1'" in admin["config"]["errors"][0]["message"]
    for header in ("Bearer wrong", "Basic YWRtaW46YWRtaW4=", "admin-token-for-tests", "Bearer",
                   "Bearer admin-token-for-tests-and-more", "Bearer é"):
        answer = await client.get("/v1/config/status", headers={"Authorization": header})
        assert answer.status == 401, header
        assert "errors" not in await answer.text()


async def test_non_utf8_authorization_is_refused_not_a_500(client):
    for path, method in (("/v1/config/status", "GET"), ("/v1/items/x", "PUT")):
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n".encode()
                     + b"Authorization: Bearer \xff\xfe\xc3\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        head = await reader.readline()
        writer.close()
        assert head.split()[1] == b"401", (path, head)


async def test_status_details_are_off_without_an_admin_token(aiohttp_client, make_server):
    from adserve.server.app import create_app

    client = await aiohttp_client(create_app(make_server()))
    assert (await client.get("/v1/config/status")).status == 200
    assert (await client.get("/v1/config/status", headers=ADMIN)).status == 403
