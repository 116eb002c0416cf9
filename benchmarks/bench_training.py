"""`adserve train` end to end against the bare path it is built on, and the lookup cost per widget.

The log is simulated (planted tastes) and written through the server's EventLog. "adserve train"
is all of the command's work: read the log files, build the matrix, BM25, fit, the top-N tables,
write the artifact. The baseline, run in the same process between its repeats, is what no
trainer can skip: read the same files + build the matrix + implicit's ALS ``fit`` with the same
settings, both under ``threadpool_limits(1, "blas")``. Both read with the parse cache warm (the
steady state of a scheduled retrain). Peak memory is the command's own report, run once as a
subprocess, against the baseline's in a subprocess of its own.

    python benchmarks/bench_training.py --users 20000 --repeats 3   # rewrites its RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time

from common import OUT, ROOT, machine, median_spread, replace_section
from threadpoolctl import threadpool_limits

from adserve.catalog import Catalog
from adserve.events import EventLog, log_files
from adserve.model import Recs
from adserve.recs.artifact import ModelArtifact
from adserve.recs.evaluate import evaluate, table
from adserve.recs.matrix import build_matrix, cache_for, read_interactions
from adserve.recs.recommender import Recommender
from adserve.recs.simulate import SimulationSpec, simulate
from adserve.recs.train import fit, make_model, train, weighted

RECS = Recs(factors=64, iterations=15)
ITEMS_PER_DAY = 100  # a news site's daily output; the tables' cost grows with readers x articles
BARE = """
import resource, sys
from threadpoolctl import threadpool_limits
from adserve.events import log_files
from adserve.model import Recs
from adserve.recs.matrix import build_matrix, cache_for, read_interactions
from adserve.recs.train import make_model, weighted
recs = Recs(factors={factors}, iterations={iterations})
events = sys.argv[1]
data = build_matrix(read_interactions(log_files(events), recs, cache=cache_for(events)))
with threadpool_limits(1, "blas"):
    make_model(recs).fit(weighted(data.matrix, recs), show_progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def simulated_log(users: int) -> tuple:
    folder = OUT / f"log-{users}-{ITEMS_PER_DAY}"
    if not folder.exists():
        catalog = Catalog()
        log = EventLog(folder / "events", writer="simulated")
        simulate(log, SimulationSpec(users=users, days=14, items_per_day=ITEMS_PER_DAY), catalog=catalog)
        log.close()
        catalog.write(folder / "catalog.jsonl")
    return folder, Catalog.load(folder / "catalog.jsonl")


def bare(events) -> float:
    """Seconds of the baseline: read + matrix + implicit's fit."""
    started = time.perf_counter()
    data = build_matrix(read_interactions(log_files(events), RECS, cache=cache_for(events)))
    with threadpool_limits(1, "blas"):
        make_model(RECS).fit(weighted(data.matrix, RECS), show_progress=False)
    return time.perf_counter() - started


def training(folder, repeats: int) -> tuple[list, list, dict]:
    """(adserve train seconds, baseline seconds, the last artifact's metadata), interleaved."""
    events = folder / "events"
    read_interactions(log_files(events), RECS, cache=cache_for(events))  # warm the parse cache
    ours, theirs, meta = [], [], {}
    for _ in range(repeats):
        theirs.append(bare(events))
        started = time.perf_counter()
        meta = train(events, RECS, OUT / "bench-model.npz").meta
        ours.append(time.perf_counter() - started)
    return ours, theirs, meta


def peak_memory(folder) -> tuple[str, float]:
    """(the `adserve train` command's last two lines, the baseline's peak MiB), each in its own process."""
    config = OUT / "bench-config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "recs.yaml").write_text(f"recs: {{factors: {RECS.factors}, iterations: {RECS.iterations}}}\n")
    env, repo = {"PYTHONPATH": str(ROOT.parent)}, ROOT.parent
    command = [sys.executable, "-m", "adserve.cli", "train", "--config", str(config.relative_to(repo)),
               "--events", str((folder / "events").relative_to(repo)),
               "--out", str((OUT / "bench-model.npz").relative_to(repo))]
    report = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=repo).stdout
    code = BARE.format(factors=RECS.factors, iterations=RECS.iterations)
    baseline = subprocess.run([sys.executable, "-c", code, str(folder / "events")], capture_output=True,
                              text=True, check=True, env=env).stdout
    return "\n".join(report.strip().splitlines()[-2:]), float(baseline)


def lookups(catalog, data) -> tuple[float, float]:
    """µs per personal widget from the tables, against one implicit ``recommend()`` call."""
    artifact = ModelArtifact.load(OUT / "bench-model.npz")
    recommender = Recommender(catalog, RECS)
    recommender.use_model(artifact)
    users = artifact.user_ids.tolist()[:2000]
    started = time.perf_counter()
    for user in users:
        recommender.recommend("personal", user, None, 6, set())
    ours = (time.perf_counter() - started) / len(users) * 1e6
    model = fit(data, RECS)
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        for u in range(len(users)):
            model.recommend(u, data.matrix[u], N=6, filter_already_liked_items=True)
    return ours, (time.perf_counter() - started) / len(users) * 1e6


def run(repeats: int = 3, users: int = 20_000) -> str:
    folder, catalog = simulated_log(users)
    ours, theirs, meta = training(folder, repeats)
    ratio = [a / b for a, b in zip(ours, theirs)]
    command_report, baseline_mib = peak_memory(folder)
    interactions = read_interactions(log_files(folder / "events"), RECS)
    lookup, implicit_call = lookups(catalog, build_matrix(interactions))
    scores = evaluate(interactions, RECS, k=6)
    shape = meta["data"]
    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in meta["steps"].items())
    return "\n".join([
        "### Training and recommendation lookups",
        f"Simulated log: {users:,} readers, 14 days, {ITEMS_PER_DAY} articles a day -> matrix "
        f"{shape['users']:,} x {shape['items']:,}, {shape['nonzeros']:,} non-zeros, tables for "
        f"{shape['table_readers']:,} readers active in the last {RECS.max_age_hours:.0f} h; ALS "
        f"{RECS.factors} factors, {RECS.iterations} iterations, BM25; parse cache warm.", "",
        "| path | seconds (median, spread) |", "|---|---:|",
        f"| `adserve train`: read, matrix, BM25, fit, top-N tables, artifact | {median_spread(ours, 2)} |",
        f"| baseline: read, matrix, BM25, implicit `fit` | {median_spread(theirs, 2)} |", "",
        f"**adserve train / baseline: {median_spread(ratio, 2)}** (target <= 1.5; last run's steps: "
        f"{steps})", "",
        "The command itself (`python -m adserve.cli train`, same settings) printed:", "",
        "```", command_report, "```", "",
        f"Baseline's peak memory in a process of its own: {baseline_mib:.0f} MiB.", "",
        f"Recs lookup per widget (6 items, personal, precomputed table + heat order + filters): "
        f"**{lookup:.1f} µs**, against {implicit_call:.1f} µs for one implicit `recommend()` call.", "",
        "Offline evaluation on the same log (`adserve evaluate --untuned`, last 20% of time held out):", "",
        table(scores, 6), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    section = run(args.repeats, args.users)
    command = "python benchmarks/bench_training.py" + "".join(f" {a}" for a in sys.argv[1:])
    lines = section.splitlines()
    lines.insert(1, f"Produced by `{command}` on {dt.date.today().isoformat()}; {machine()}.")
    replace_section("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
