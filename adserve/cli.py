"""The ``adserve`` command: serve, check, schema, simulate, train, evaluate, forget."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = "config"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ad and recommendation server")
    serve.add_argument("--config", default=DEFAULT_CONFIG)
    serve.add_argument("--demo", action="store_true",
                       help="local demo: random secret in var/, simulated history if the log is empty")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--writer", default=os.environ.get("ADSERVE_WRITER", "main"),
                       help="event file suffix; give each replica its own")

    check = commands.add_parser("check", help="validate a config folder, listing every error")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)

    schema = commands.add_parser("schema", help="write the JSON Schema of config files")
    schema.add_argument("--out", default=f"{DEFAULT_CONFIG}/adserve.schema.json", help="'-' for stdout")

    simulate = commands.add_parser("simulate", help="write a synthetic event log with planted tastes")
    simulate.add_argument("--config", default=DEFAULT_CONFIG)
    simulate.add_argument("--events", help="event folder (default: server.event_dir)")
    simulate.add_argument("--users", type=int, default=1500)
    simulate.add_argument("--days", type=int, default=14)
    simulate.add_argument("--seed", type=int, default=7)

    for name, text in (("train", "fit a model on the event log"),
                       ("evaluate", "time-split evaluation of every strategy")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", default=DEFAULT_CONFIG)
        sub.add_argument("--events", help="event folder or one file (default: server.event_dir)")
        sub.add_argument("--since", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
        sub.add_argument("--until", type=dt.date.fromisoformat, help="last day, YYYY-MM-DD")
        sub.add_argument("--k", type=int, default=6)
        sub.add_argument("--test-share", type=float, default=0.2)
    commands.choices["train"].add_argument("--out", help="artifact path (default: server.model_path)")
    commands.choices["evaluate"].add_argument("--json", action="store_true")

    forget = commands.add_parser("forget", help="erase a reader from the log, counters and model")
    forget.add_argument("reader", help="the reader id (the loader's adserve_reader)")
    forget.add_argument("--config", default=DEFAULT_CONFIG)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {"serve": _serve, "check": _check, "schema": _schema, "simulate": _simulate,
            "train": _train, "evaluate": _evaluate, "forget": _forget}[args.command](args)


def _load_or_exit(folder: str):
    from .config import load_config

    loaded = load_config(folder)
    for problem in loaded.warnings + loaded.errors:
        print(problem, file=sys.stderr)
    if not loaded.ok:
        raise SystemExit(f"{len(loaded.errors)} error(s) in {folder}")
    return loaded


def _check(args) -> int:
    from .config import load_config

    loaded = load_config(args.config)
    for problem in loaded.errors + loaded.warnings:
        print(problem)
    summary = f"{len(loaded.errors)} error(s), {len(loaded.warnings)} warning(s)"
    if loaded.ok:
        config = loaded.config
        summary += (f"; {len(config.campaigns)} campaigns, {len(config.placements)} placements "
                    f"in {len(config.files)} files")
    print(summary)
    return 0 if loaded.ok else 1


def _schema(args) -> int:
    from .schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


def _simulate(args) -> int:
    from .catalog import Catalog
    from .events import EventLog
    from .recs.simulate import SimulationSpec, simulate

    config = _load_or_exit(args.config).config
    folder = Path(args.events or config.server.event_dir)
    catalog = Catalog(journal=folder / "catalog-updates.jsonl")
    log = EventLog(folder, writer="simulated")
    counts = simulate(log, SimulationSpec(users=args.users, days=args.days, seed=args.seed),
                      catalog=catalog)
    log.close()
    print(f"simulated into {folder}: {counts}")
    return 0


def _read(args, config):
    """(interactions, read report) of the log the command names, unreadable lines reported."""
    from .recs.train import read_log

    try:
        data, report = read_log(args.events or config.server.event_dir, config.recs, args.since,
                                args.until)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    for file, line in report.skipped[:20]:
        print(f"skipped unreadable line {file}:{line}", file=sys.stderr)
    return data, report


def _evaluate(args) -> int:
    from .recs.evaluate import evaluate, table

    config = _load_or_exit(args.config).config
    scores = evaluate(_read(args, config)[0], config.recs, args.k, args.test_share)
    if args.json:
        print(json.dumps([vars(s) for s in scores], indent=2))
    else:
        print(table(scores, args.k))
    return 0


def _train(args) -> int:
    from .recs.evaluate import evaluate
    from .recs.train import train_on

    config = _load_or_exit(args.config).config
    data, report = _read(args, config)  # read once: evaluated, then trained on
    offline = {s.strategy: vars(s) for s in evaluate(data, config.recs, args.k, args.test_share)}
    artifact = train_on(data, report, config.recs, args.out or config.server.model_path,
                        show_progress=sys.stderr.isatty(), offline_scores=offline)
    data = artifact.meta["data"]
    print(f"trained on {data['events']} events: {data['users']} readers x {data['items']} items, "
          f"{data['nonzeros']} non-zeros in {artifact.meta['seconds']} s -> "
          f"{args.out or config.server.model_path}")
    return 0


def _forget(args) -> int:
    from .retention import forget

    settings = _load_or_exit(args.config).config.server
    print(forget(args.reader, settings.event_dir, settings.model_path, settings.redis_url).report())
    return 0


def _serve(args) -> int:
    import asyncio

    from .server import listener
    from .server.app import AdServer, create_app, secret_from_env

    loaded = _load_or_exit(args.config)
    settings = loaded.config.server
    secret = secret_from_env(args.demo, Path(settings.event_dir).parent)
    if args.demo:
        _bootstrap_demo(args.config, loaded.config)
    server = AdServer(args.config, loaded, secret, writer=args.writer,
                      cms_token=os.environ.get("ADSERVE_CMS_TOKEN"))
    host, port = args.host or settings.host, args.port or settings.port
    asyncio.run(listener.serve(
        create_app(server), host, port, settings.max_connections, settings.head_timeout_seconds,
        on_refusal=lambda: server.metrics.count(server.metrics.shed, "connections"),
        ready=lambda: logging.getLogger("adserve").info("serving on http://%s:%d", host, port)))
    return 0


def _bootstrap_demo(config_dir: str, config) -> None:
    """First demo start: simulate two weeks of readers and train, so recs are personal at once."""
    from .events import log_files
    from .recs.train import train

    folder = Path(config.server.event_dir)
    if not folder.exists() or not log_files(folder):
        print("demo: simulating two weeks of reader history ...", file=sys.stderr)
        _simulate(argparse.Namespace(config=config_dir, events=str(folder), users=1500, days=14,
                                     seed=7))
    if not Path(config.server.model_path).exists():
        print("demo: training the first model ...", file=sys.stderr)
        train(folder, config.recs, config.server.model_path)


if __name__ == "__main__":
    sys.exit(main())
