"""The adserve command as a newcomer meets it: run as a subprocess from a folder of its own.

Every failure must be one line on stderr that says what is wrong, exit 2 for usage and 1 for
everything else, and never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from adserve.cli import DEMO_CONFIG, STARTER_CONFIG, _parser
from adserve.config import load_config
from adserve.server.app import AdServer, create_app

from .conftest import ADMIN, ADMIN_TOKEN
from .live import free_port, wait_until_up, with_public_url

REPO = Path(__file__).resolve().parent.parent
LONG_SECRET = "s" * 32


def adserve(*args: str, cwd: Path, env: dict | None = None, code: Path = REPO, timeout: float = 120):
    """Run ``adserve ARGS`` in ``cwd`` with the package found in ``code`` (this checkout's)."""
    environment = {k: v for k, v in os.environ.items() if k != "ADSERVE_SECRET"}
    environment |= {"PYTHONPATH": str(code), **(env or {})}
    return subprocess.run([sys.executable, "-m", "adserve.cli", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def fails(result, code: int, *words: str) -> str:
    """The failure's stderr, checked to be one line naming ``words``, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last
    return last


def write_log(folder: Path, events: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events-2026-11-20.main.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def clicks(readers: int, items: int, start: float = 1_795_000_000.0) -> list[dict]:
    return [{"ts": start + 60 * (r * items + i), "type": "click", "user": f"r{r}", "item": f"a{(r + i) % 9}"}
            for r in range(readers) for i in range(items)]


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A folder with no config/ in it, as after `pip install adserve` on a new machine."""
    return tmp_path


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_every_option_says_what_it_does_and_its_default():
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)
        assert "`" not in command.format_help(), name
    assert "`" not in parser.format_help()


def test_version_and_help_run(elsewhere):
    version = adserve("--version", cwd=elsewhere)
    assert version.returncode == 0 and version.stdout.startswith("adserve ")
    assert adserve("train", "--help", cwd=elsewhere).returncode == 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as `pip install .` lays it out (setuptools' build_py: code plus package data)."""
    pytest.importorskip("setuptools")
    folder = tmp_path_factory.mktemp("install")
    source = folder / "source"
    shutil.copytree(REPO / "adserve", source / "adserve", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                            "build_py", "--build-lib", str(folder / "lib")],
                           cwd=source, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    return folder / "lib"


def test_installed_demo_serves_from_any_folder_and_writes_var_there(installed, elsewhere):
    write_log(elsewhere / "var" / "events", clicks(5, 4))  # a tiny history: no two-week simulation
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ADSERVE_SECRET"} | {
        "PYTHONPATH": str(installed), "ADSERVE_ADMIN_TOKEN": ADMIN_TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "adserve.cli", "serve", "--demo", "--port", str(port)],
                               cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        status_url = urllib.request.Request(f"http://127.0.0.1:{port}/v1/config/status", headers=ADMIN)
        with urllib.request.urlopen(status_url) as response:
            status = json.loads(response.read())
        files = status["config"]["active_files"]
        assert status["model"]["loaded"] and files and all(f.startswith(str(installed)) for f in files)
        assert (elsewhere / "var" / "demo-secret").exists() and (elsewhere / "var" / "model.npz").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in process.stderr.read()


def test_init_writes_a_starter_that_passes_check(installed, elsewhere):
    result = adserve("init", "mysite", cwd=elsewhere, code=installed)
    assert result.returncode == 0, result.stderr
    folder = elsewhere / "mysite"
    checked = adserve("check", "mysite", cwd=elsewhere)
    assert checked.returncode == 0 and checked.stdout.startswith("0 error(s), 0 warning(s)"), checked.stdout
    schema = jsonschema_rs.validator_for(json.loads((folder / "adserve.schema.json").read_text()))
    files = sorted(folder.rglob("*.yaml"))
    campaigns = []
    for path in files:
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema="), path
        document = json.loads(json.dumps(yaml.safe_load(text), default=str))
        schema.validate(document)
        campaigns += document.get("campaigns", [])
    formats = {c.get("format", "image") for campaign in campaigns for c in campaign["creatives"]}
    assert formats == {"image", "native"}
    fails(adserve("init", "mysite", cwd=elsewhere), 1, "mysite", "not an empty folder")


def test_empty_config_folder_warns(elsewhere):
    (elsewhere / "config").mkdir()
    result = adserve("check", cwd=elsewhere)
    assert "no YAML files found" in result.stdout


def test_missing_config_folder_points_at_init_and_demo(elsewhere):
    fails(adserve("serve", cwd=elsewhere, env={"ADSERVE_SECRET": LONG_SECRET}), 1,
          "adserve init", "--demo")


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_port_out_of_range_is_a_usage_error(elsewhere, port):
    fails(adserve("serve", "--demo", "--port", port, cwd=elsewhere), 2, "--port")


def test_port_in_use_is_one_line(elsewhere, taken_port):
    fails(adserve("serve", "--demo", "--port", str(taken_port), cwd=elsewhere), 1,
          f"127.0.0.1:{taken_port}", "in use")


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_address_the_machine_does_not_have_is_one_line(elsewhere, host):
    fails(adserve("serve", "--demo", "--host", host, "--port", str(free_port()), cwd=elsewhere), 1,
          f"cannot listen on {host}")


@pytest.mark.parametrize("secret", ["short", "s" * 31])
def test_short_secret_is_refused_in_one_line(elsewhere, secret):
    fails(adserve("serve", "--config", str(DEMO_CONFIG), cwd=elsewhere, env={"ADSERVE_SECRET": secret}),
          1, "ADSERVE_SECRET", "at least 32")


def test_missing_secret_says_how_to_make_one(elsewhere):
    fails(adserve("serve", "--config", str(DEMO_CONFIG), cwd=elsewhere), 1, "ADSERVE_SECRET", "--demo")


def test_a_32_byte_secret_is_accepted(elsewhere, taken_port):
    """It gets as far as the socket, which is taken here so that the server does not start."""
    config = with_public_url(Path(shutil.copytree(DEMO_CONFIG, elsewhere / "site")), "http://127.0.0.1:8080")
    fails(adserve("serve", "--config", str(config), "--port", str(taken_port), cwd=elsewhere,
                  env={"ADSERVE_SECRET": LONG_SECRET}), 1, "in use")


def test_schema_into_a_missing_folder(elsewhere):
    fails(adserve("schema", "--out", "nowhere/adserve.schema.json", cwd=elsewhere), 1, "nowhere", "does not exist")


def test_simulate_into_an_unwritable_path(elsewhere):
    (elsewhere / "a-file").write_text("")
    fails(adserve("simulate", "--config", str(DEMO_CONFIG), "--events", "a-file/events", cwd=elsewhere),
          1, "a-file")


def test_simulate_refuses_a_folder_with_events_unless_appending(elsewhere):
    events = elsewhere / "events"
    log = write_log(events, clicks(2, 2))
    before = log.read_text()
    fails(adserve("simulate", "--config", str(DEMO_CONFIG), "--events", "events", cwd=elsewhere),
          1, "--append")
    assert log.read_text() == before
    small = ("--users", "3", "--days", "1")
    assert adserve("simulate", "--config", str(DEMO_CONFIG), "--events", "events", "--append", *small,
                   cwd=elsewhere).returncode == 0
    assert len(list(events.glob("events-*.jsonl"))) > 1


def test_train_on_a_missing_path_says_it_does_not_exist(elsewhere):
    fails(adserve("train", "--config", str(DEMO_CONFIG), "--events", "/missing/events", cwd=elsewhere),
          1, "/missing/events", "does not exist")


@pytest.mark.parametrize("command", ["evaluate", "tune"])
def test_evaluate_or_tune_with_nothing_to_score_fails(elsewhere, command):
    write_log(elsewhere / "events", clicks(1, 3))
    fails(adserve(command, "--config", str(DEMO_CONFIG), "--events", "events", cwd=elsewhere), 1,
          "nothing to score")


def test_after_the_demo_train_runs_where_there_is_only_var(elsewhere):
    """The README's steps after `serve --demo` in a folder of one's own: no ./config there."""
    write_log(elsewhere / "var" / "events", clicks(6, 5))
    result = adserve("train", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "demo config" in result.stderr and (elsewhere / "var" / "model.npz").exists()


def test_train_reports_its_whole_time_and_peak_memory(elsewhere):
    write_log(elsewhere / "events", clicks(6, 5))
    result = adserve("train", "--config", str(DEMO_CONFIG), "--events", "events", "--out", "m.npz",
                     cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    timing = result.stdout.strip().splitlines()[-1]
    for step in ("read", "matrix", "fit", "tables", "write", "peak memory"):
        assert step in timing, timing
    assert (elsewhere / "m.npz").exists()


async def test_the_starter_config_fills_its_placements(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its var/ goes here
    shutil.copytree(STARTER_CONFIG, tmp_path / "mysite")
    loaded = load_config(tmp_path / "mysite")
    server = AdServer(tmp_path / "mysite", loaded, LONG_SECRET.encode())
    client = await aiohttp_client(create_app(server))
    response = await client.post("/v1/slots", json={
        "page": {"item_id": "a1", "url": "http://127.0.0.1:8080/a1"}, "user": {"id": "r1"},
        "device": "desktop", "slots": [{"id": "ad", "placement": "sidebar"},
                                       {"id": "recs", "placement": "you-might-like"}]})
    slots = (await response.json())["slots"]
    assert slots["ad"]["fill"] and slots["ad"]["campaign_id"] == 1001
    assert any(item["sponsored"] for item in slots["recs"]["items"])
