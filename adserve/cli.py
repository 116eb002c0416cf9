"""The adserve command: serve, init, check, schema, simulate, train, evaluate, tune, report, forget,
export-events.

Every failure ends in one line on stderr that says what to do, never a traceback: usage errors
exit 2 (argparse, or ``BadArgument`` for what only the config or the disk can refute), everything
else exits 1 (``Failure``, or an ``OSError`` the system raised).
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import logging
import os
import resource
import shutil
import socket
import sys
import time
from importlib import metadata
from pathlib import Path

from .reports import GROUPINGS

DEFAULT_CONFIG = "config"
DEMO_CONFIG = Path(__file__).parent / "demo"        # The Capitol Ledger, shipped inside the package
STARTER_CONFIG = Path(__file__).parent / "starter"  # what `adserve init` copies
NOTHING_TO_SCORE = ("nothing to score: no reader seen before the held-out period came back in it; "
                    "a longer log (or a larger --test-share) is needed")


class Failure(Exception):
    """A one-line reason the command could not do its job (exit status 1)."""
    status = 1


class BadArgument(Failure):
    """An argument that parses but cannot work here: it names nothing there (an unknown campaign, a
    missing folder) or needs what the config lacks (several workers without a shared store)."""
    status = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status = 1
    try:
        return COMMANDS[args.command](args)
    except Failure as exc:
        reason, status = str(exc), exc.status
    except OSError as exc:  # a file or socket the system refused: its reason is the whole story
        reason = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    except KeyboardInterrupt:
        return 130
    print(f"adserve {args.command}: error: {reason}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adserve", description="Ad slots and recommendation widgets for a news site.",
        epilog="Start with: adserve serve --demo (or adserve init mysite for a config of your own).")
    parser.add_argument("--version", action="version", version=f"adserve {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text)

    config_help = f"config folder (default: {DEFAULT_CONFIG})"
    log_config_help = (f"config folder (default: {DEFAULT_CONFIG}, or the demo config shipped with "
                       "adserve where there is none, as after adserve serve --demo)")

    serve = command("serve", "run the ad and recommendation server")
    serve.add_argument("--config", help=f"config folder (default: {DEFAULT_CONFIG}, or the demo "
                                        "config shipped with adserve when --demo is given)")
    serve.add_argument("--demo", action="store_true",
                       help="local demo: a random signing secret kept in var/ and, on first start, "
                            "two weeks of simulated readers and a first model (default: off)")
    serve.add_argument("--host", help="address to listen on (default: server.host of the config)")
    serve.add_argument("--port", type=_port, help="TCP port, 1-65535 (default: server.port of the config)")
    serve.add_argument("--writer", default=os.environ.get("ADSERVE_WRITER"),
                       help="event file suffix; give each replica its own (default: $ADSERVE_WRITER, "
                            "else 'main'; with several workers, each adds -w1, -w2 ... to it, or "
                            "to the host name)")
    serve.add_argument("--workers", type=_positive,
                       help="worker processes on the port; more than one needs server.redis_url "
                            "(default: server.workers of the config, 1)")
    serve.add_argument("--worker", type=_positive, metavar="SLOT",
                       help="internal: run as worker SLOT of a parent started with --workers, on "
                            "its shared port (default: not a worker; the parent sets it)")

    init = command("init", "write a commented starter config for a new site")
    init.add_argument("folder", help="folder to create; must not exist yet or be empty")

    check = command("check", "validate a config folder, listing every error")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=config_help)

    schema = command("schema", "write the JSON Schema of config files")
    schema.add_argument("--out", default=f"{DEFAULT_CONFIG}/adserve.schema.json",
                        help="file to write, '-' for stdout (default: %(default)s)")

    simulate = command("simulate", "write a synthetic event log with planted tastes")
    simulate.add_argument("--config", help=log_config_help)
    simulate.add_argument("--events", help="event folder to write (default: server.event_dir of the config)")
    simulate.add_argument("--append", action="store_true",
                          help="add to a folder that already holds events (default: refuse it)")
    simulate.add_argument("--users", type=_positive, default=1500, help="readers (default: %(default)s)")
    simulate.add_argument("--days", type=_positive, default=14, help="days of history (default: %(default)s)")
    simulate.add_argument("--seed", type=int, default=7, help="random seed (default: %(default)s)")

    for name, text in (("train", "fit a model on the event log and write the artifact"),
                       ("evaluate", "time-split evaluation of every strategy"),
                       ("tune", "choose recs settings on a validation window before the test window")):
        sub = command(name, text)
        sub.add_argument("--config", help=log_config_help)
        sub.add_argument("--events", help="event folder, one log file, or a redis://... event stream "
                                          "(default: server.events of the config, else its "
                                          "server.event_dir)")
        sub.add_argument("--since", type=_day, help="first day read, YYYY-MM-DD, UTC (default: the log's first)")
        sub.add_argument("--until", type=_day, help="last day read, YYYY-MM-DD, UTC (default: the log's last)")
        sub.add_argument("--k", type=_positive, default=6, help="items scored per reader (default: %(default)s)")
        sub.add_argument("--test-share", type=_share, default=0.2,
                         help="share of the log's time span held out for testing (default: %(default)s)")
    train = commands.choices["train"]
    train.add_argument("--out", help="artifact path (default: server.model_path of the config)")
    train.add_argument("--untuned", action="store_true",
                       help="ignore the last choice of adserve tune (default: apply it when "
                            "recs-tuned.json lies beside server.model_path)")
    train.add_argument("--evaluate", action="store_true",
                       help="also run the evaluation first and keep its scores in the artifact "
                            "(default: off; it costs a second fit)")
    evaluate = commands.choices["evaluate"]
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table (default: off)")
    evaluate.add_argument("--untuned", action="store_true",
                          help="score the config's recs settings as they are (default: tune them "
                               "first on a validation window before the test window, as adserve "
                               "tune does, without storing the choice)")

    report = command("report", "delivery per campaign, creative, variant, placement, day or widget "
                               "strategy, from the event log")
    report.add_argument("--config", help=log_config_help)
    report.add_argument("--events", help="event folder, one log file or a stream, redis://host:port/db "
                                         "(default: the config's server.events or server.event_dir)")
    report.add_argument("--since", type=_day, help="first day, YYYY-MM-DD, UTC (default: the log's first)")
    report.add_argument("--until", type=_day, help="last day, YYYY-MM-DD, UTC (default: the log's last)")
    report.add_argument("--by", choices=GROUPINGS, default="campaign", help="rows per (default: %(default)s)")
    report.add_argument("--campaign", type=_positive, help="only this campaign id (default: all)")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output (default: %(default)s)")
    report.add_argument("--replay-thompson", action="store_true",
                        help="instead of delivery rows: replay the logged fixed A/B splits under Thompson "
                             "allocation and estimate the clicks it would have gained, per creative "
                             "(default: off)")

    export = command("export-events", "copy an event stream into daily JSON Lines files (resumable)")
    export.add_argument("--config", help=log_config_help)
    export.add_argument("--events", help="the stream, redis://host:port/db (default: server.events of "
                                         "the config)")
    export.add_argument("--out", default="var/events-archive",
                        help="folder of daily files; a later run appends what the stream got since "
                             "(default: %(default)s)")

    forget = command("forget", "erase a reader from the log, counters and model")
    forget.add_argument("reader", help="the reader id (the loader's adserve_reader)")
    forget.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    return parser


def _version() -> str:
    try:
        return metadata.version("adserve")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _port(text: str) -> int:
    port = _int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 1-65535")
    return port


def _positive(text: str) -> int:
    number = _int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not a positive whole number")
    return number


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a share between 0 and 1")
    return share


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a day in YYYY-MM-DD form") from None


def _load(folder: str | Path):
    """The valid config in ``folder``; its warnings and errors printed, a Failure if it has errors."""
    from .config import load_config

    if not Path(folder).is_dir():
        raise Failure(f"config folder '{folder}' not found: write one with `adserve init {folder}`, "
                      "or try `adserve serve --demo`")
    loaded = load_config(folder)
    for problem in loaded.warnings + loaded.errors:
        print(problem, file=sys.stderr)
    if not loaded.ok:
        raise Failure(f"{loaded.problems.counts['error']} error(s) in {folder}")
    return loaded


def _log_config(given: str | None) -> str:
    """The config of a log command: as given, else ./config, else the demo's (the README's steps
    after `adserve serve --demo` run in a folder that has only var/)."""
    if given or Path(DEFAULT_CONFIG).is_dir():
        return given or DEFAULT_CONFIG
    print(f"no ./{DEFAULT_CONFIG} here: using the demo config shipped with adserve", file=sys.stderr)
    return str(DEMO_CONFIG)


def _check(args) -> int:
    from .config import load_config

    loaded = load_config(args.config)
    for problem in loaded.errors + loaded.warnings:
        print(problem)
    counts = loaded.problems.counts  # all of them, also those past the listed first hundred
    summary = f"{counts['error']} error(s), {counts['warning']} warning(s)"
    if loaded.ok:
        config = loaded.config
        summary += (f"; {len(config.campaigns)} campaigns, {len(config.placements)} placements "
                    f"in {len(config.files)} files")
    print(summary)
    return 0 if loaded.ok else 1


def _init(args) -> int:
    folder = Path(args.folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise Failure(f"{folder} already exists and is not an empty folder; name a new one")
    shutil.copytree(STARTER_CONFIG, folder, dirs_exist_ok=True)
    (folder / "adserve.schema.json").write_text(_schema_text())
    print(f"wrote a starter config to {folder}; edit it, then `adserve check {folder}` and "
          f"`ADSERVE_SECRET=... adserve serve --config {folder}`")
    return 0


def _schema(args) -> int:
    if args.out == "-":
        sys.stdout.write(_schema_text())
        return 0
    out = Path(args.out)
    if not out.parent.is_dir():
        raise Failure(f"folder {out.parent} does not exist; create it or choose another --out")
    out.write_text(_schema_text())
    print(f"wrote {out}")
    return 0


def _schema_text() -> str:
    from .schema import json_schema

    return json.dumps(json_schema(), indent=2) + "\n"


def _simulate(args) -> int:
    from .catalog import Catalog
    from .events import EventLog, log_files
    from .recs.simulate import SimulationSpec, simulate

    config = _load(_log_config(args.config)).config
    folder = Path(args.events or config.server.event_dir)
    if folder.exists() and not folder.is_dir():
        raise Failure(f"{folder} is a file; --events names a folder")
    if log_files(folder) and not args.append:
        raise Failure(f"{folder} already holds events: pass --append to add a second history to "
                      "them, or name an empty folder with --events")
    catalog = Catalog(journal=folder / "catalog-updates.jsonl")
    log = EventLog(folder, writer="simulated")
    counts = simulate(log, SimulationSpec(users=args.users, days=args.days, seed=args.seed),
                      catalog=catalog)
    log.close()
    print(f"simulated into {folder}: {counts}")
    return 0


def _read(args, config):
    """(interactions, read report) of the log the command names, unreadable lines reported."""
    from .recs.train import EmptyLog, read_log

    source = _event_source(args, config)
    if not source.exists():
        raise Failure(f"{source} does not exist: --events names an event folder or one log file"
                      + ("" if args.events else " (or run `adserve simulate` first)"))
    try:
        data, report = read_log(source, config.recs, args.since, args.until)
    except EmptyLog as exc:
        raise Failure(str(exc)) from exc
    for file, line in report.skipped[:20]:
        print(f"skipped unreadable line {file}:{line}", file=sys.stderr)
    return data, report


def _event_source(args, config) -> Path:
    """The folder or file of events the command reads: a stream is first copied to local files."""
    from .events import StreamUnreachable, open_reader

    try:
        return open_reader(args.events or config.server.events or config.server.event_dir)
    except StreamUnreachable as exc:
        raise Failure(f"{exc}; is the stream's Redis running?") from exc


def _scores(args, recs, data) -> list:
    from .recs.evaluate import evaluate

    scores = evaluate(data, recs, args.k, args.test_share)
    if not scores:
        raise Failure(NOTHING_TO_SCORE)
    return scores


def _recs(args, config):
    """The config's recs settings with the last tune's choice applied, unless --untuned."""
    from .recs.tune import tuned

    path = _tuned_path(config)
    if args.untuned or not path.is_file():
        return config.recs
    print(f"applying the tuned settings in {path} (--untuned ignores them)", file=sys.stderr)
    return tuned(config.recs, path)


def _tuned_path(config) -> Path:
    from .recs.tune import TUNED_FILE

    return Path(config.server.model_path).with_name(TUNED_FILE)


def _evaluate(args) -> int:
    """The tuned strategies' scores (as `tune` would choose, nothing stored), or --untuned ones."""
    config = _load(_log_config(args.config)).config
    data = _read(args, config)[0]
    tuning = None if args.untuned else _tuning(args, config, data)
    scores = _scores(args, config.recs, data) if tuning is None else tuning.test
    if args.json:
        print(json.dumps({"tuned": tuning and tuning.params, "validation": tuning and tuning.validation,
                          "scores": [vars(s) for s in scores]}, indent=2))
    else:
        _print_scores(scores, tuning, args.k)
    return 0


def _tune(args) -> int:
    from .recs.tune import save

    config = _load(_log_config(args.config)).config
    tuning = _tuning(args, config, _read(args, config)[0])
    save(tuning, _tuned_path(config))
    _print_scores(tuning.test, tuning, args.k)
    print(f"\nkept in {_tuned_path(config)}: train and the server apply it until the next tune")
    return 0


def _tuning(args, config, data):
    from .recs.tune import tune

    tuning = tune(data, config.recs, args.k, args.test_share)
    if tuning is None or not tuning.test:
        raise Failure(NOTHING_TO_SCORE + " (tuning needs a validation window before it too)")
    return tuning


def _print_scores(scores: list, tuning, k: int) -> None:
    from .recs.evaluate import table

    if tuning is not None:
        print("tuned on a validation window before the test window: "
              + ", ".join(f"{name}={value}" for name, value in tuning.params.items())
              + f" (personal precision@{k} there {tuning.validation:.4f})\n")
    print(table(scores, k))


def _train(args) -> int:
    from .recs.train import train_on

    began = time.perf_counter()
    config = _load(_log_config(args.config)).config
    recs = _recs(args, config)
    out = args.out or config.server.model_path
    data, report = _read(args, config)
    read_seconds = time.perf_counter() - began
    offline = {s.strategy: vars(s) for s in _scores(args, recs, data)} if args.evaluate else {}
    artifact = train_on(data, report, recs, out, show_progress=sys.stderr.isatty(),
                        offline_scores=offline, began=began)
    meta, shape = artifact.meta, artifact.meta["data"]
    steps = {"read": read_seconds, **meta["steps"]}
    print(f"trained on {shape['events']} events: {shape['users']} readers x {shape['items']} items, "
          f"{shape['nonzeros']} non-zeros, tables for {shape['table_readers']} recent readers -> {out}")
    print(f"in {meta['seconds']:.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
          + f"), peak memory {_peak_mib():.0f} MiB")
    return 0


def _peak_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export_events(args) -> int:
    from .events import StreamUnreachable, export, is_stream

    stream = args.events or _load(_log_config(args.config)).config.server.events
    if not is_stream(stream):
        raise Failure("no event stream: give --events redis://host:port/db, or set server.events")
    try:
        done = export(stream, args.out)
    except StreamUnreachable as exc:
        raise Failure(f"{exc}; is the stream's Redis running?") from exc
    print(f"exported {done.written} events into {args.out} ({done.duplicates} duplicates dropped, "
          f"{done.unreadable} unreadable entries); the next run resumes after entry {done.position}")
    return 0


def _forget(args) -> int:
    from .retention import forget

    settings = _load(args.config).config.server
    print(forget(args.reader, settings.event_dir, settings.model_path, settings.redis_url,
                 settings.events).report())
    return 0


def _report(args) -> int:
    from .reports.aggregate import report
    from .reports.output import render
    from .reports.rollup import rollups

    if args.since and args.until and args.since > args.until:
        raise BadArgument(f"--since {args.since} is after --until {args.until}")
    if args.config and not Path(args.config).is_dir():
        raise BadArgument(f"config folder '{args.config}' not found")
    config = _load(_log_config(args.config)).config
    source = _event_source(args, config)
    if not source.exists():
        raise BadArgument(f"{source} does not exist: --events names an event folder or one log file")
    if args.replay_thompson:
        from .reports.thompson_replay import replay_thompson

        if args.campaign is not None and args.campaign not in {c.id for c in config.campaigns}:
            raise BadArgument(f"unknown campaign {args.campaign}: the replay needs its variants in the config")
        print(render(replay_thompson(source, config, args.campaign, args.since, args.until), "replay",
                     args.format))
        return 0
    days = rollups(source)
    rows = report(days, args.by, config, args.since, args.until, args.campaign)
    if args.campaign is not None and not rows and args.campaign not in {c.id for c in config.campaigns}:
        raise BadArgument(f"unknown campaign {args.campaign}: not in the config and not in the log")
    print(render(rows, args.by, args.format))
    return 0


def _serve(args) -> int:
    from .tokens import secret_from_env

    config_dir = args.config or (str(DEMO_CONFIG) if args.demo else DEFAULT_CONFIG)
    loaded = _load(config_dir)
    settings = loaded.config.server
    workers = args.workers or settings.workers
    if workers > 1 and not settings.redis_url:
        raise BadArgument(f"{workers} workers need state they all share: set server.redis_url in the config "
                     "(e.g. 'server: {redis_url: redis://127.0.0.1:6379/0}'), or run one worker")
    try:
        secret = secret_from_env(args.demo, Path(settings.event_dir).parent)
    except ValueError as exc:
        raise Failure(str(exc)) from exc
    if not settings.public_url and not args.demo:
        raise Failure("server.public_url is not set: tracking URLs would copy any request's Host "
                      "header (set it, or run with --demo)")
    host, port = args.host or settings.host, args.port or settings.port
    if args.worker is not None:  # one of several workers: its own socket on the shared port
        return _serve_one(args, config_dir, loaded, secret, _listen(host, port, shared=True), args.writer)
    if workers == 1:
        sock = _listen(host, port)
        if args.demo:
            _bootstrap_demo(config_dir, loaded.config)
        return _serve_one(args, config_dir, loaded, secret, sock, args.writer or "main")
    from .server.workers import Supervisor, worker_command, writer_name

    port_holder = _listen(host, port, shared=True, listen=False)
    if args.demo:
        _bootstrap_demo(config_dir, loaded.config)
    logging.getLogger("adserve").info("serving on http://%s:%d with %d workers", host, port, workers)
    return Supervisor(workers, lambda slot: worker_command(
        slot, config_dir, host, port, writer_name(args.writer, slot), args.demo), port_holder).run()


def _serve_one(args, config_dir: str, loaded, secret: bytes, sock: socket.socket, writer: str) -> int:
    """Run the server in this process until SIGTERM or SIGINT."""
    import asyncio

    from .server import listener
    from .server.app import AdServer, create_app
    from .server.workers import tag_logs

    settings = loaded.config.server
    if args.worker is not None:
        tag_logs(writer)
    server = AdServer(config_dir, loaded, secret, writer=writer,
                      cms_token=os.environ.get("ADSERVE_CMS_TOKEN"),
                      admin_token=os.environ.get("ADSERVE_ADMIN_TOKEN"))
    host, port = sock.getsockname()[:2]
    asyncio.run(listener.serve(
        create_app(server), sock, settings.max_connections, settings.head_timeout_seconds,
        on_refusal=lambda: server.metrics.count(server.metrics.shed, "connections"),
        ready=lambda: logging.getLogger("adserve").info("serving on http://%s:%d", host, port)))
    return 0


def _listen(host: str, port: int, shared: bool = False, listen: bool = True) -> socket.socket:
    """The bound socket, made before anything starts so a taken port is one line.

    ``shared``: several workers bind the port (SO_REUSEPORT); the parent of workers binds it too,
    without listening, only to hold it.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _listen_failure(host, port, exc) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen()
    except OSError as exc:
        sock.close()
        raise _listen_failure(host, port, exc) from exc
    return sock


def _listen_failure(host: str, port: int, exc: OSError) -> Failure:
    reason = os.strerror(exc.errno) if (exc.errno or 0) > 0 else exc.strerror or str(exc)
    hint = {errno.EADDRNOTAVAIL: " (is it an address of this machine?)",
            errno.EADDRINUSE: " (--port chooses another)"}.get(exc.errno, "")
    return Failure(f"cannot listen on {host}:{port}: {reason}{hint}")


def _bootstrap_demo(config_dir: str, config) -> None:
    """First demo start: simulate two weeks of readers and train, so recs are personal at once."""
    from .events import log_files
    from .recs.train import train

    folder = Path(config.server.event_dir)
    if not log_files(folder):
        print("demo: simulating two weeks of reader history ...", file=sys.stderr)
        _simulate(argparse.Namespace(config=config_dir, events=str(folder), append=False,
                                     users=1500, days=14, seed=7))
    if not Path(config.server.model_path).exists():
        print("demo: training the first model ...", file=sys.stderr)
        train(folder, config.recs, config.server.model_path)


COMMANDS = {"serve": _serve, "init": _init, "check": _check, "schema": _schema,
            "simulate": _simulate, "train": _train, "evaluate": _evaluate, "tune": _tune,
            "report": _report, "export-events": _export_events, "forget": _forget}

if __name__ == "__main__":
    sys.exit(main())
