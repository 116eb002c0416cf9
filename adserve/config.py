"""Load a config folder: every YAML file, merged and validated, with every error in one pass."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from .model import (IAB_SIZES, Budget, Campaign, Config, ConfigFile, Creative, Daypart, Flight,
                    Placement, Price)
from .yamlload import MAX_FILE_BYTES, ConfigError, Problems, Sources, load_file

SINGLE_SECTIONS = ("site", "server", "recs")


@dataclass
class LoadResult:
    config: Config | None  # None when the folder has errors
    problems: Problems = field(default_factory=Problems)

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> list[ConfigError]:
        return self.problems.listed("error")

    @property
    def warnings(self) -> list[ConfigError]:
        return self.problems.listed("warning")


def config_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_config(folder: str | Path, now: dt.datetime | None = None) -> LoadResult:
    with _collector_paused():
        return _load(Path(folder), now)


@contextlib.contextmanager
def _collector_paused():
    """No cyclic garbage collection while a config folder loads.

    A load makes a few objects per YAML node (nodes, marks, dataclasses, source marks), and the
    collector's passes over them and over everything built so far cost more than the load itself:
    a 10,000-campaign book took 12 s of CPU with it, 5.5 s without. What a load leaves behind holds
    no cycles but a recursive alias's, which waits for the next collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(folder: Path, now: dt.datetime | None) -> LoadResult:
    problems = Problems()
    if not folder.is_dir():
        problems.add(ConfigError(str(folder), None, None, "", "config folder not found"))
        return LoadResult(None, problems)
    sources = Sources()
    fragments: list[tuple[str, ConfigFile]] = []
    checks = ObjectChecks(sources, now or dt.datetime.now(dt.timezone.utc))
    files = config_files(folder)
    if not files:
        problems.add(ConfigError(str(folder), None, None, "", "no YAML files found: nothing to serve "
                                 "(`adserve init` writes a starter config)", "warning"))
    for index, path in enumerate(files):
        if problems.full:  # the list a reader gets is complete: do not pay for what nobody sees
            problems.unread_files = [str(p) for p in files[index:]]
            break
        try:
            with path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)  # enough to tell that it is too large
        except OSError as exc:
            problems.add(ConfigError(str(path), None, None, "", f"cannot read file: {exc}"))
            continue
        fragment = load_file(ConfigFile, str(path), data, sources, problems, checks)
        if fragment is not None:
            fragments.append((str(path), fragment))
    config = _merge(fragments, sources, problems)
    config.files = [str(p) for p in files]
    problems.extend(validate(config, sources))
    return LoadResult(None if problems.counts["error"] else config, problems)


def _merge(fragments, sources: Sources, problems: Problems) -> Config:
    config = Config()
    seen: dict[str, str] = {}
    for file, fragment in fragments:
        for name in SINGLE_SECTIONS:
            part = getattr(fragment, name)
            if part is None:
                continue
            if name in seen:
                problems.add(sources.error(part, "", f"'{name}' is already defined in {seen[name]}"))
                continue
            seen[name] = file
            setattr(config, name, part)
        for placement in fragment.placements:
            if placement.id in config.placements:
                problems.add(sources.error(placement, "id", f"duplicate placement id '{placement.id}'"))
            config.placements[placement.id] = placement
        config.campaigns += fragment.campaigns
    return config


def validate(config: Config, sources: Sources) -> Iterator[ConfigError]:
    """Checks that span objects or files; each problem carries its file, line and field path.

    A generator, so that a folder with a problem in each of many campaigns is counted, not listed.
    """
    try:
        zoneinfo.ZoneInfo(config.site.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield sources.error(config.site, "timezone", f"unknown timezone '{config.site.timezone}'")
    yield from _check_unique_ids(config, sources)
    if config.server.events and not config.server.redis_url:
        yield sources.error(config.server, "events", "an event stream needs server.redis_url too: "
                            "each replica's embedded counters would replay only its own local events")
    for campaign in config.campaigns:
        yield from (sources.error(campaign.targeting, "placements", f"unknown placement '{name}'")
                    for name in campaign.targeting.placements if name not in config.placements)


def _check_unique_ids(config: Config, sources: Sources) -> Iterator[ConfigError]:
    first: dict[int, Campaign] = {}
    for campaign in config.campaigns:
        if campaign.id in first:
            other = sources.error(first[campaign.id], "id", "")
            yield sources.error(campaign, "id", f"duplicate campaign id {campaign.id} "
                                                f"(first in {other.file}:{other.line})")
        first.setdefault(campaign.id, campaign)
    counts = Counter(c.id for campaign in config.campaigns for c in campaign.creatives)
    for campaign in config.campaigns:
        yield from (sources.error(c, "id", f"duplicate creative id '{c.id}'")
                    for c in campaign.creatives if counts[c.id] > 1)


EXACT = 2**53  # the largest count every counter holds exactly (the embedded store's are floats)


def _countable(amount: Decimal) -> str | None:
    """Why ``amount`` cannot be a counter's step or limit: "large" past ``EXACT`` (or not a
    number), "fraction" when not whole; None when it can. Never raises: ``% 1`` did for
    amounts past the decimal context's 28 digits."""
    if not amount.is_finite() or abs(amount) > EXACT:
        return "large"
    return "fraction" if amount != amount.to_integral_value() else None


class ObjectChecks:
    """Checks of one object at a time, run by the loader as each object is built."""

    def __init__(self, sources: Sources, now: dt.datetime) -> None:
        self.sources = sources
        self.now = now
        self._by_type = {Flight: self.flight, Budget: self.budget, Daypart: self.daypart,
                         Campaign: self.campaign, Creative: self.creative, Placement: self.placement,
                         Price: self.price}

    def __call__(self, obj: object) -> list[ConfigError]:
        check = self._by_type.get(type(obj))
        return check(obj) if check else []

    def flight(self, flight: Flight) -> list[ConfigError]:
        if flight.end <= flight.start:
            return [self.sources.error(flight, "end", "flight ends before it starts")]
        if flight.end < self.now:
            return [self.sources.error(flight, "end", "flight is already over", "warning")]
        return []

    def budget(self, budget: Budget) -> list[ConfigError]:
        if budget.total is None and budget.daily is None:
            return [self.sources.error(budget, "", "a budget needs total, daily or both")]
        units, decimals = ("micro-units", " (at most 6 decimals)") if budget.metric == "spend" else (budget.metric, "")
        problems = []
        for name in ("total", "daily"):
            value = getattr(budget, name)
            fault = None if value is None else _countable(budget.in_units(value))
            if fault == "large":
                problems.append(self.sources.error(budget, name, f"must be at most {EXACT:,} {units}, got {value}"))
            elif fault:
                problems.append(self.sources.error(budget, name, f"must be a whole number of {units}{decimals}, "
                                                                 f"got {value}"))
        return problems

    def price(self, price: Price) -> list[ConfigError]:
        """Counters hold integer micro-units: a charge between two of them could not be billed."""
        fault = _countable(price.charge_micros())
        if fault == "large":
            return [self.sources.error(price, "amount", f"{price.amount} is too large: one charge must be at "
                                                        f"most {EXACT:,} micro-units")]
        if fault:
            unit = "impression (a CPM price has at most 3 decimals)" if price.model == "cpm" \
                else "click (at most 6 decimals)"
            return [self.sources.error(price, "amount", f"{price.amount} is not a whole number of "
                                                        f"micro-units per {unit}")]
        return []

    def daypart(self, part: Daypart) -> list[ConfigError]:
        return [self.sources.error(part, "end", "daypart ends before it starts")] \
            if part.end <= part.start else []

    def campaign(self, campaign: Campaign) -> list[ConfigError]:
        if not campaign.creatives:
            return [self.sources.error(campaign, "creatives", "a campaign needs at least one creative")]
        problems = list(self._shares(campaign))
        if problems:
            return problems
        if campaign.status == "active" and campaign.weight == 0:
            return [self.sources.error(campaign, "weight", "weight 0 never serves; to stop a campaign "
                                                           "say status: paused", "warning")]
        if campaign.status == "active" and all(c.weight == 0 for c in campaign.creatives):
            return [self.sources.error(campaign, "creatives", "every creative has weight 0: the campaign "
                                                              "never serves", "warning")]
        return []

    def _shares(self, campaign: Campaign) -> Iterator[ConfigError]:
        """Thompson's floors must fit: k variants x min_share of at most 100% of new readers."""
        for creative in campaign.creatives:
            floor = campaign.thompson_floor(creative)
            shown = sum(v.weight > 0 for v in creative.variants)
            if floor is not None and shown * floor > 1:
                where = creative if creative.min_share is not None else campaign
                yield self.sources.error(where, "min_share", f"{shown} variants of '{creative.id}' with "
                                                             f"min_share {floor} need more than 100% of readers")

    def placement(self, placement: Placement) -> list[ConfigError]:
        problems = [self.sources.error(placement, "sizes", f"unknown size '{s}'")
                    for s in placement.sizes if s not in IAB_SIZES]
        if placement.type == "display" and not placement.sizes:
            problems.append(self.sources.error(placement, "sizes", "a display placement needs sizes"))
        problems += [self.sources.error(placement, "sponsored_positions",
                                        f"position {p} is outside 1..{placement.count}")
                     for p in placement.sponsored_positions if not 1 <= p <= placement.count]
        return problems

    def creative(self, creative: Creative) -> list[ConfigError]:
        problems = []
        if creative.size not in IAB_SIZES:
            problems.append(self.sources.error(creative, "size", f"unknown size '{creative.size}' "
                                               f"(known: {', '.join(IAB_SIZES)})"))
        elif (creative.format == "native") != (creative.size == "native"):
            problems.append(self.sources.error(creative, "size", "native creatives use size "
                                                                 "'native', and only they do"))
        if not creative.variants:
            problems.append(self.sources.error(creative, "variants", "a creative needs a variant"))
        elif sum(v.weight for v in creative.variants) <= 0:
            problems.append(self.sources.error(creative, "variants", "variant weights add up to zero"))
        needed = _CONTENT_FIELD[creative.format]
        problems += [self.sources.error(v, needed, f"{creative.format} variants need '{needed}'")
                     for v in creative.variants if not getattr(v, needed)]
        return problems


_CONTENT_FIELD = {"image": "image_url", "html": "html", "native": "title"}
