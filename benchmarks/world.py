"""A benchmark world: N generated campaigns, a 100k-article catalog, a simulated log and a model.

Campaigns are drawn like a real ad book: mostly standard tier, a few sponsorships and house ads,
sizes weighted toward 300x250 and 728x90, most targeted at one or two sections, some at keywords,
devices or dayparts, many with caps and budgets.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import yaml

from adserve.catalog import Catalog, Item
from adserve.config import load_config
from adserve.events import EventLog
from adserve.recs.simulate import SECTIONS, SimulationSpec, simulate
from adserve.recs.train import train

REPO = Path(__file__).resolve().parent.parent
SIZES = ["300x250"] * 5 + ["728x90"] * 3 + ["320x50"] * 2 + ["300x600", "160x600", "970x250"]
FILE_SIZE = 500
KEYWORDS = ["election", "senate", "budget", "tariffs", "climate", "ai", "court", "nato", "jobs"]


def campaign(cid: int, rng: random.Random) -> dict:
    tier = rng.choices(["sponsorship", "standard", "remnant", "house"], [2, 80, 15, 3])[0]
    targeting: dict = {}
    if rng.random() < 0.8:
        targeting["sections"] = rng.sample(SECTIONS, rng.choice([1, 1, 2]))
    if rng.random() < 0.3:
        targeting["keywords"] = {"include": rng.sample(KEYWORDS, 2)}
    if rng.random() < 0.3:
        targeting["devices"] = [rng.choice(["desktop", "mobile"])]
    if rng.random() < 0.1:
        targeting["dayparts"] = [{"start": "06:00", "end": "23:00"}]
    size = rng.choice(SIZES)
    out = {
        "id": cid, "name": f"Generated campaign {cid}", "advertiser": f"Advertiser {cid % 400}",
        "flight": {"start": "2026-01-01T00:00:00Z", "end": "2028-01-01T00:00:00Z"},
        "tier": tier, "weight": rng.choice([1, 1, 2, 3]),
        "price": ({"model": "cpm", "amount": round(rng.uniform(0.5, 20), 2)} if rng.random() < 0.8
                  else {"model": "cpc", "amount": round(rng.uniform(0.1, 2), 2)}),
        "pacing": rng.choice(["even", "asap"]),
        "targeting": targeting,
        "creatives": [{"id": f"g{cid}-{size}", "size": size, "landing_url": f"https://adv{cid}.example/",
                       "variants": [{"id": v, "image_url": "/static/creatives/house-300x250.svg"}
                                    for v in ("A", "B")[:rng.choice([1, 2])]]}],
    }
    if rng.random() < 0.5:
        out["frequency_cap"] = {"count": rng.choice([3, 5, 10]), "period": "day"}
    if rng.random() < 0.6:
        out["budget"] = {"metric": "impressions", "daily": rng.choice([10**5, 10**6]),
                         "total": 10**8}
    return out


def write_config(folder: Path, campaigns: int, seed: int = 1) -> Path:
    """The demo site settings plus ``campaigns`` generated campaigns (and the demo's house ads)."""
    config = folder / "config"
    if config.exists():
        shutil.rmtree(config)
    (config / "campaigns").mkdir(parents=True)
    shutil.copy(REPO / "config" / "site.yaml", config / "site.yaml")
    shutil.copy(REPO / "config" / "campaigns" / "house.yaml", config / "campaigns" / "house.yaml")
    shutil.copy(REPO / "config" / "campaigns" / "native.yaml", config / "campaigns" / "native.yaml")
    rng = random.Random(seed)
    write_campaigns(config, [campaign(100_000 + n, rng) for n in range(campaigns)], "generated")
    return config


def write_campaigns(config: Path, campaigns: list[dict], stem: str) -> None:
    """``campaigns`` in files of ``FILE_SIZE`` under ``config``/campaigns: each stays under the
    loader's 1 MiB limit."""
    for start in range(0, len(campaigns), FILE_SIZE):
        part = config / "campaigns" / f"{stem}-{start // FILE_SIZE:03d}.yaml"
        part.write_text(yaml.safe_dump({"campaigns": campaigns[start:start + FILE_SIZE]}, sort_keys=False))


def write_catalog(config: Path, items: int, extra: list[Item]) -> None:
    now = time.time()
    catalog = {i.item_id: i for i in extra}
    for n in range(items - len(extra)):
        section = SECTIONS[n % len(SECTIONS)]
        item_id = f"archive-{section}-{n:06d}"
        catalog[item_id] = Item(item_id=item_id, url=f"/articles/{item_id}",
                                title=f"Archive story {n}", image_url=f"/static/thumbs/{section}.svg",
                                section=section, published=now - 86400 * (30 + n % 900))
    Catalog(catalog).write(config / "catalog.jsonl")


def build(folder: Path, campaigns: int = 1000, items: int = 100_000, users: int = 3000) -> Path:
    """Config, catalog, two weeks of simulated events and a trained model under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, campaigns)
    events = folder / "var" / "events"
    if events.exists():
        shutil.rmtree(events)
    simulated = Catalog()
    log = EventLog(events, writer="simulated")
    simulate(log, SimulationSpec(users=users, days=14), catalog=simulated)
    log.close()
    write_catalog(config, items, list(simulated.items.values()))
    loaded = load_config(config)
    assert loaded.ok, loaded.errors[:3]
    train(events, loaded.config.recs, folder / "var" / "model.npz")
    return config
