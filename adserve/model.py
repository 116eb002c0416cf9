"""The one typed config model.

Every YAML file under config/ is a ``ConfigFile`` fragment; the loader merges the fragments into a
``Config``. The same dataclasses drive the YAML loader, the validator, the JSON Schema that editors
use, the server and the reports, so a field exists in exactly one place.

Field metadata keys understood by the loader and the schema generator:
``doc`` (description), ``min``/``max`` (numeric bounds), ``pattern`` (regex for strings).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

#: IAB sizes a news site runs, plus ``native`` for recommendation-widget items.
IAB_SIZES = {
    "300x250": "medium rectangle",
    "728x90": "leaderboard",
    "320x50": "mobile banner",
    "160x600": "wide skyscraper",
    "300x600": "half page",
    "970x250": "billboard",
    "320x100": "large mobile banner",
    "336x280": "large rectangle",
    "native": "native item in a recommendation widget",
}

MICROS = 1_000_000  # money is counted in integer micro-units (millionths) of the site's currency
TIERS = ("sponsorship", "standard", "remnant", "house")
Tier = Literal["sponsorship", "standard", "remnant", "house"]
Device = Literal["desktop", "mobile", "tablet", "app"]
VariantOptimization = Literal["fixed", "thompson"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def doc(text: str, **constraints) -> dict:
    return {"doc": text, **constraints}


@dataclass(kw_only=True)
class Flight:
    start: dt.datetime = field(metadata=doc("First moment the campaign may serve (timezone aware)."))
    end: dt.datetime = field(metadata=doc("Moment the campaign stops serving (timezone aware)."))


def micros(amount: Decimal | float) -> Decimal:
    """``amount`` of currency in micro-units, exactly: a fraction left over is the caller's error.

    YAML gives Decimals read from the text; a float (a model built in code) goes through its
    shortest repr, so 0.1 is one tenth, not the binary fraction next to it.
    """
    return (amount if isinstance(amount, Decimal) else Decimal(repr(amount))) * MICROS


@dataclass(kw_only=True)
class Price:
    model: Literal["cpm", "cpc"] = field(metadata=doc("CPM: price per 1000 impressions; CPC: per click."))
    amount: Decimal = field(metadata=doc(
        "Price in the site's currency; one charge (a CPM impression, a CPC click) must be a whole "
        "number of micro-units (at most 3 decimals for CPM, 6 for CPC).", min=0))

    def charge_micros(self) -> Decimal:
        """What one charge costs: an impression at CPM, a click at CPC (whole when the config is valid)."""
        return micros(self.amount) / (1000 if self.model == "cpm" else 1)


@dataclass(kw_only=True)
class Budget:
    metric: Literal["impressions", "clicks", "spend"] = field(
        metadata=doc("What the budget counts."))
    total: Decimal | None = field(default=None, metadata=doc("Cap over the whole flight.", min=0))
    daily: Decimal | None = field(default=None, metadata=doc("Cap per day in the site timezone.", min=0))

    def in_units(self, amount: Decimal | float) -> Decimal:
        """A cap in the units its counter holds: micro-units for spend, else impressions or clicks."""
        return micros(amount) if self.metric == "spend" else Decimal(amount)


@dataclass(kw_only=True)
class FrequencyCap:
    count: int = field(metadata=doc("Impressions allowed per reader per period.", min=1))
    period: Literal["hour", "day", "week", "flight"] = field(
        default="day", metadata=doc("Window the count applies to."))
    without_consent: Literal["skip", "serve"] = field(default="skip", metadata=doc(
        "When the cap cannot be kept (no reader id, or no consent to personalised ads): skip the "
        "reader, or serve without the cap."))


@dataclass(kw_only=True)
class KeywordRule:
    include: list[str] = field(default_factory=list, metadata=doc("Page must carry one of these."))
    exclude: list[str] = field(default_factory=list, metadata=doc("Page must carry none of these."))


@dataclass(kw_only=True)
class Daypart:
    days: list[Weekday] = field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        metadata=doc("Weekdays the window applies to."))
    start: str = field(metadata=doc("Local start time HH:MM.", pattern=r"^([01]\d|2[0-3]):[0-5]\d$"))
    end: str = field(metadata=doc("Local end time HH:MM (exclusive; 24:00 allowed).",
                                  pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"))


@dataclass(kw_only=True)
class Targeting:
    """Every rule that is set must match; a rule the request cannot answer excludes (fails closed)."""

    sections: list[str] = field(default_factory=list, metadata=doc("Page sections to serve on."))
    keywords: KeywordRule = field(default_factory=KeywordRule)
    devices: list[Device] = field(default_factory=list)
    countries: list[str] = field(default_factory=list,
                                 metadata=doc("ISO 3166 alpha-2 codes.", pattern=r"^[A-Z]{2}$"))
    dayparts: list[Daypart] = field(default_factory=list,
                                    metadata=doc("Serve only inside one of these local windows."))
    url_patterns: list[str] = field(default_factory=list,
                                    metadata=doc("Glob patterns (fnmatch) for the page URL."))
    placements: list[str] = field(default_factory=list, metadata=doc("Named placements only."))


@dataclass(kw_only=True)
class Variant:
    id: str = field(metadata=doc("A/B variant name, e.g. A or B.", pattern=r"^[A-Za-z0-9_-]{1,32}$"))
    weight: float = field(default=1.0, metadata=doc("Share of readers who see it.", min=0))
    image_url: str | None = field(default=None, metadata=doc("Image creative or native thumbnail."))
    html: str | None = field(default=None, metadata=doc("HTML creative, rendered in a sandboxed frame."))
    title: str | None = field(default=None, metadata=doc("Native headline."))


@dataclass(kw_only=True)
class Creative:
    id: str = field(metadata=doc("Creative id, unique in the config.", pattern=r"^[A-Za-z0-9_.-]{1,64}$"))
    name: str | None = field(default=None, metadata=doc("Trafficking name, e.g. '12174 - Site - ...'."))
    size: str = field(metadata=doc("IAB size WxH, or 'native'."))
    format: Literal["image", "html", "native"] = "image"
    platform: Literal["WEB", "MWEB", "APP", "ANY"] = field(
        default="ANY", metadata=doc("WEB: desktop web, MWEB: mobile web, APP: in-app."))
    weight: float = field(default=1.0, metadata=doc(
        "Share of its campaign's impressions among its creatives that fit the slot (0: never shown).",
        min=0))
    landing_url: str = field(metadata=doc("Where a click goes (https).", pattern=r"^https?://\S+$"))
    variants: list[Variant] = field(metadata=doc("At least one variant."))
    variant_optimization: VariantOptimization | None = field(default=None, metadata=doc(
        "How its variants split new readers (none: as its campaign says)."))
    min_share: float | None = field(default=None, metadata=doc(
        "Under thompson: the share of new readers each variant keeps (none: as its campaign says).",
        min=0, max=0.5))


@dataclass(kw_only=True)
class Campaign:
    id: int = field(metadata=doc("Campaign id, unique across files.", min=1))
    name: str
    advertiser: str
    status: Literal["active", "paused"] = "active"
    flight: Flight
    tier: Tier = field(default="standard", metadata=doc("sponsorship > standard > remnant > house."))
    weight: float = field(default=1.0, metadata=doc(
        "Share within its tier, times its eCPM (0: never serves; prefer status: paused).", min=0))
    price: Price
    expected_ctr: float = field(default=0.002, metadata=doc("CTR used to rank CPC against CPM.",
                                                             min=0, max=1))
    budget: Budget | None = None
    pacing: Literal["even", "asap"] = "even"
    frequency_cap: FrequencyCap | None = None
    targeting: Targeting = field(default_factory=Targeting)
    creatives: list[Creative]
    variant_optimization: VariantOptimization = field(default="fixed", metadata=doc(
        "How each creative's variants split new readers: fixed (by their weights) or thompson "
        "(toward the variant likeliest to have the best CTR, from counted impressions and clicks); "
        "a reader keeps the variant first shown."))
    min_share: float = field(default=0.05, metadata=doc(
        "Under thompson: the share of new readers each variant keeps, so none stops being tested.",
        min=0, max=0.5))

    def thompson_floor(self, creative: Creative) -> float | None:
        """The exploration share of ``creative``'s variants under Thompson allocation; None: fixed split."""
        method = creative.variant_optimization or self.variant_optimization
        if method != "thompson":
            return None
        return self.min_share if creative.min_share is None else creative.min_share


@dataclass(kw_only=True)
class Placement:
    id: str = field(metadata=doc("Name the page uses, e.g. special-offer.", pattern=r"^[a-z0-9-]{1,64}$"))
    type: Literal["display", "recs"]
    sizes: list[str] = field(default_factory=list, metadata=doc("Display sizes the slot accepts."))
    count: int = field(default=6, metadata=doc("Items in a recs widget.", min=1, max=24))
    strategy: Literal["personal", "related", "popular"] = field(
        default="personal", metadata=doc("First strategy tried; falls back down the chain."))
    sponsored_positions: list[int] = field(
        default_factory=list, metadata=doc("1-based widget positions for native campaign items."))
    collapse: Literal["never", "on_empty", "before_fetch"] = field(
        default="never", metadata=doc(
            "Unfilled slot: never (keep the reserved space, the page never shifts), on_empty "
            "(reserve, then collapse if unfilled: a shift), before_fetch (reserve nothing; "
            "shown only if filled: a shift)."))


@dataclass(kw_only=True)
class Discovery:
    """Articles first seen in a slot request are fetched from the site and read from the page's own
    metadata (Open Graph, JSON-LD), never from the request; only pages of ``allowed_origins``."""

    enabled: bool = field(default=True, metadata=doc("Fetch unknown pages of the site's origins."))
    fetches_per_second: float = field(default=1.0, metadata=doc("Most page fetches per second.",
                                                                min=0.01, max=100))
    queue_size: int = field(default=256, metadata=doc("Most pages waiting to be fetched; more are "
                                                      "dropped until the queue drains.", min=1, max=10000))
    timeout_seconds: float = field(default=5.0, metadata=doc("Limit for one page, redirects and body "
                                                             "included.", min=0.1, max=60))
    max_page_bytes: int = field(default=512_000, metadata=doc(
        "Bytes read of a page; metadata past them is not seen.", min=4096, max=10_000_000))
    retry_minutes: float = field(default=60.0, metadata=doc("A page fetched, or failed, is not fetched "
                                                            "again for this long.", min=0))


@dataclass(kw_only=True)
class Site:
    name: str = "adserve demo"
    timezone: str = field(default="UTC", metadata=doc("IANA zone for dayparts and daily budgets."))
    allowed_origins: list[str] = field(default_factory=list, metadata=doc("Page origins (CORS)."))
    unique_advertiser_per_page: bool = False
    consent_required: bool = field(default=False, metadata=doc(
        "A request without privacy signals (no TCF answer, no GPC) counts as no consent."))
    discovery: Discovery = field(default_factory=Discovery)


@dataclass(kw_only=True)
class Server:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=doc("TCP port.", min=1, max=65535))
    public_url: str | None = field(default=None, metadata=doc(
        "Base of tracking URLs, e.g. https://ads.news.example; required outside --demo (the demo uses "
        "the request's own host)."))
    max_body_bytes: int = field(default=65536, metadata=doc("Largest accepted request body.", min=1024))
    max_slots: int = field(default=20, metadata=doc("Most slots in one request.", min=1))
    event_dir: str = field(default="var/events",
                           metadata=doc("Event log folder, relative to the working folder."))
    retention_days: int | None = field(default=None, metadata=doc(
        "Event files older than this many days are deleted (at start and daily); none: kept.",
        min=1))
    model_path: str = field(default="var/model.npz", metadata=doc("Recommendation model artifact."))
    catalog_path: str = field(default="catalog.jsonl",
                              metadata=doc("Article catalog, relative to the config folder."))
    token_ttl_seconds: int = field(default=86400, metadata=doc("Tracking token lifetime.", min=60))
    max_pending: int = field(default=256, metadata=doc(
        "Slot requests in progress (e.g. waiting on Redis) past which new ones get 503.", min=1))
    max_queue_ms: float = field(default=100.0, metadata=doc(
        "A slot request that waited this long (ms) for the CPU after arriving gets 503.", min=1))
    max_connections: int = field(default=4096, metadata=doc(
        "Open connections past which a new one gets 503 and is closed (kept under the file limit).",
        min=1))
    head_timeout_seconds: float = field(default=15.0, metadata=doc(
        "Time to send a whole request head, from connecting or from the last answer; idle "
        "keep-alive connections also close after it.", min=0.1))
    body_timeout_seconds: float = field(default=10.0, metadata=doc(
        "Time to send a request body once its handler reads it; then 408.", min=0.1))
    redis_url: str | None = field(default=None, metadata=doc("Shared state for several replicas."))
    events: str | None = field(default=None, metadata=doc(
        "Event sink: none for JSON Lines files in event_dir (one per replica and day); a "
        "redis://host:port/db URL for one Redis stream that every replica appends to (event_dir "
        "then holds only what waits for the stream while it is unreachable). Needs redis_url.",
        pattern=r"(redis|rediss|unix)://.+"))
    workers: int = field(default=1, metadata=doc(
        "Worker processes answering on the port (--workers); more than one needs redis_url.",
        min=1, max=256))
    reservation_seconds: int = field(default=300, metadata=doc(
        "How long an answered ad holds its share of caps and budgets waiting for its impression "
        "pixel; then the share is released (a later pixel is billable only if the limit still "
        "fits).", min=5, max=86400))


@dataclass(kw_only=True)
class Recs:
    factors: int = field(default=64, metadata=doc("ALS latent factors.", min=2))
    regularization: float = field(default=0.05, metadata=doc("ALS regularization.", min=0))
    iterations: int = field(default=15, metadata=doc("ALS iterations.", min=1))
    alpha: float = field(default=1.0, metadata=doc("Confidence scaling of interactions.", min=0))
    algorithm: Literal["als", "bpr"] = "als"
    weighting: Literal["confidence", "bm25"] = "bm25"
    click_weight: float = field(default=1.0, metadata=doc("Weight of a click.", min=0))
    view_weight: float = field(default=0.5, metadata=doc("Weight of reading an article.", min=0))
    impression_weight: float = field(default=0.0, metadata=doc(
        "Weight of an item shown in a widget (0: off; on simulated logs it adds noise).", min=0))
    popularity_half_life_hours: float = field(default=24.0, metadata=doc("Decay of popularity.", min=0.1))
    fresh_hours: float = field(default=24.0, metadata=doc("Age under which an item counts as fresh.",
                                                          min=0))
    max_age_hours: float = field(default=168.0, metadata=doc("Older articles are not recommended.",
                                                             min=1))
    explore_share: float = field(default=0.15, metadata=doc("Share of widget slots given to fresh "
                                                            "items.", min=0, max=1))
    retrain_minutes: int | None = field(default=None, metadata=doc("Retrain on this schedule.", min=1))
    top_n: int = field(default=50, metadata=doc("Precomputed candidates per item and user.", min=6))


@dataclass(kw_only=True)
class ConfigFile:
    """What one YAML file may hold; all parts are optional and merged across files."""

    site: Site | None = None
    server: Server | None = None
    recs: Recs | None = None
    placements: list[Placement] = field(default_factory=list)
    campaigns: list[Campaign] = field(default_factory=list)


@dataclass(kw_only=True)
class Config:
    """The merged, validated configuration the server runs on."""

    site: Site = field(default_factory=Site)
    server: Server = field(default_factory=Server)
    recs: Recs = field(default_factory=Recs)
    placements: dict[str, Placement] = field(default_factory=dict)
    campaigns: list[Campaign] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
