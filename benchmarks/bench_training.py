"""Training from the log against implicit's own fit, lookup cost per widget, and the offline table.

The log is simulated (planted tastes) and written through the server's EventLog. "adserve train"
here is everything from log files to fitted factors: reading, id mapping, matrix, BM25, fit.
The baseline is implicit's ``fit`` alone on the very same weighted matrix, same parameters, both
under ``threadpool_limits(1, "blas")``.
"""

from __future__ import annotations

import shutil
import time

from common import OUT, median_spread
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


def simulated_log(users: int) -> tuple:
    folder = OUT / f"log-{users}"
    catalog = Catalog()
    if not folder.exists():
        log = EventLog(folder / "events", writer="simulated")
        simulate(log, SimulationSpec(users=users, days=14), catalog=catalog)
        log.close()
        catalog.write(folder / "catalog.jsonl")
    return folder, Catalog.load(folder / "catalog.jsonl")


def training(folder, repeats: int) -> tuple[list, list, list, dict]:
    """(cold seconds, warm seconds, implicit fit seconds, matrix shape) per repeat.

    Cold: no parse cache, every line parsed. Warm: the steady state of a scheduled retrain, closed
    days read from the parse cache.
    """
    cache = cache_for(folder / "events")
    cold, warm, bare = [], [], []
    for _ in range(repeats):
        for cached, times in ((False, cold), (True, warm)):
            if not cached and cache.exists():
                shutil.rmtree(cache)
            started = time.perf_counter()
            data = build_matrix(read_interactions(log_files(folder / "events"), RECS, cache=cache))
            fit(data, RECS)
            times.append(time.perf_counter() - started)
        matrix = weighted(data.matrix, RECS)
        with threadpool_limits(1, "blas"):
            model = make_model(RECS)
            started = time.perf_counter()
            model.fit(matrix, show_progress=False)
            bare.append(time.perf_counter() - started)
    shape = {"users": data.matrix.shape[0], "items": data.matrix.shape[1], "nnz": data.matrix.nnz}
    return cold, warm, bare, shape


def lookups(folder, catalog) -> tuple[float, float]:
    artifact = train(folder / "events", RECS, OUT / "bench-model.npz")
    recommender = Recommender(catalog, RECS)
    recommender.use_model(ModelArtifact.load(OUT / "bench-model.npz"))
    users = artifact.user_ids.tolist()[:2000]
    started = time.perf_counter()
    for user in users:
        recommender.recommend("personal", user, None, 6, set())
    ours = (time.perf_counter() - started) / len(users) * 1e6
    data = build_matrix(read_interactions(log_files(folder / "events"), RECS))
    model = fit(data, RECS)
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        for u in range(len(users)):
            model.recommend(u, data.matrix[u], N=6, filter_already_liked_items=True)
        theirs = (time.perf_counter() - started) / len(users) * 1e6
    return ours, theirs


def run(repeats: int = 3, users: int = 20_000) -> str:
    folder, catalog = simulated_log(users)
    cold, warm, bare, shape = training(folder, repeats)
    ratio = [a / b for a, b in zip(warm, bare)]
    cold_ratio = [a / b for a, b in zip(cold, bare)]
    lookup, implicit_call = lookups(folder, catalog)
    data = read_interactions(log_files(folder / "events"), RECS)
    scores = evaluate(data, RECS, k=6)
    return "\n".join([
        "### Training and recommendation lookups",
        f"Simulated log: {users:,} readers, 14 days -> matrix {shape['users']:,} x {shape['items']:,}, "
        f"{shape['nnz']:,} non-zeros; ALS {RECS.factors} factors, {RECS.iterations} iterations, BM25.", "",
        "| step | seconds (median, spread) |", "|---|---:|",
        f"| log files -> matrix -> BM25 -> fit, parse cache warm (scheduled retrain) | {median_spread(warm, 2)} |",
        f"| the same, cold: every line parsed | {median_spread(cold, 2)} |",
        f"| implicit `fit` alone, same matrix | {median_spread(bare, 2)} |", "",
        f"**adserve training / implicit fit: {median_spread(ratio, 2)} warm, {median_spread(cold_ratio, 2)} "
        f"cold** (target <= 1.3)", "",
        f"Recs lookup per widget (6 items, personal, precomputed table + heat order + filters): "
        f"**{lookup:.1f} µs**, against {implicit_call:.1f} µs for one implicit `recommend()` call.", "",
        "Offline evaluation on the same log (`adserve evaluate`, last 20% of time held out):", "",
        table(scores, 6), ""])


if __name__ == "__main__":
    print(run())
