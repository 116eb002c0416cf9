"""One slot request in, one answer out: decisions, recommendations, signed tracking URLs.

Data flows one way: the request is decided (``decision``), recommended (``recs``), turned into the
answer with signed URLs, and the decision is appended to the event log before the answer leaves.
One token is signed per ad (its pixel and click URL share it) and one per widget (its pixel, and
its articles' click URLs with their position), so a page answer costs a handful of signatures. (One
widget token carrying its natives too saved a signature each, but every article's and native's URL
then repeated the natives' landing URLs: answers a half larger, a token bound shared by them all.)
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from .catalog import Catalog, absolute
from .catalog_discovery import CatalogDiscovery
from .decision import AdNeed, Decider, Fill
from .events import EventSink
from .model import Campaign, Config, Creative, Placement, Variant
from .recs.recommender import Recommender
from .request import MAX_SHARED, Slot, SlotRequest, shared
from .tokens import Head, Signer


@dataclass
class Runtime:
    """What one config produces; swapped as a whole on reload, which drops what it keeps.

    It keeps what a page's layout and a shown ad always give under this config, built once:
    ``layouts``, a layout's needs (the parsed slot tuple is shared by every view of a layout,
    see ``request._Layouts``), and ``shown``, an ad's fixed answer part, decision record and
    token head per slot id and placement, variant, base URL and widget strategy (a native's).
    Each entry holds the objects whose ids key it, so an id cannot be reused while its entry
    lives. Made-up layouts and host names could fill them: ``layouts`` keeps only the layouts
    the parser shares, as many as it keeps, and ``shown`` holds no slot (a made-up one can be
    a body's worth of sizes) and starts over past ``most_shown``: ``MAX_KEPT`` and
    ``KEPT_PER_VARIANT`` entries for each variant of the book, so that a big book's ads, each
    shown in a slot or two of its size, stay kept (~1.5 KB an entry: at most ~36 MB more for
    12,000 variants).
    """
    config: Config
    decider: Decider
    layouts: dict[int, tuple] = field(default_factory=dict, repr=False)  # id(slots) -> _Layout
    # (slot id, placement, id(variant), base URL, strategy) -> _Shown
    shown: dict[tuple, tuple] = field(default_factory=dict, repr=False)

    most_shown: int = field(init=False, repr=False)

    MAX_KEPT = 4096
    KEPT_PER_VARIANT = 2

    def __post_init__(self) -> None:
        variants = sum(len(creative.variants) for campaign in self.config.campaigns for creative in campaign.creatives)
        self.most_shown = self.MAX_KEPT + self.KEPT_PER_VARIANT * variants

    def layout(self, slots: tuple[Slot, ...]) -> _Layout:
        kept = self.layouts.get(id(slots))
        if kept is None:
            sponsored = {slot.id: _sponsored_positions(self, slot) for slot in slots if slot.type == "recs"}
            needs = [AdNeed(slot.id, slot.sizes, slot.placement) for slot in slots
                     if slot.type == "display"]  # display first: it may take a campaign the widget wants
            needs += [AdNeed(f"{slot.id}#{p}", ("native",), slot.placement)
                      for slot in slots if slot.type == "recs" for p in sponsored[slot.id]]
            kept = _Layout(slots, sponsored, tuple(needs))
            if shared(slots):
                _keep(self.layouts, id(slots), kept, MAX_SHARED)
        return kept

    def shown_ad(self, slot: Slot, fill: Fill, base_url: str, signer: Signer, strategy: str | None = None) -> _Shown:
        """A display ad (``strategy`` None) or a widget's native ad as ``slot`` shows it."""
        key = (slot.id, slot.placement, id(fill.variant), base_url, strategy)
        kept = self.shown.get(key)
        if kept is None or kept.creative is not fill.creative or kept.campaign is not fill.campaign:
            kept = _keep(self.shown, key, _Shown.of(slot, fill, base_url, signer, strategy), self.most_shown)
        return kept


class _Layout(NamedTuple):
    """What serving a layout needs before its decisions: shared by its views, never changed."""
    slots: tuple[Slot, ...]
    sponsored: dict[str, list[int]]  # a widget's slot id -> its positions sold to native campaigns
    needs: tuple[AdNeed, ...]


class _Shown(NamedTuple):
    """An ad in a slot: its answer but for the tracking URLs, its decision record (a display
    ad's; a widget records its natives' campaigns), and its token's head: the fields of the ad,
    the slot's id and placement and a native's widget strategy (the page's reader, page,
    reservation and consent follow per token)."""
    variant: Variant
    creative: Creative
    campaign: Campaign
    answer: dict
    record: dict | None
    token: Head

    @classmethod
    def of(cls, slot: Slot, fill: Fill, base_url: str, signer: Signer, strategy: str | None) -> _Shown:
        campaign, creative, variant = fill.campaign, fill.creative, fill.variant
        record = None
        if strategy is None:
            width, height = _dimensions(creative.size)
            answer = {"type": "display", "fill": True, "campaign_id": campaign.id, "creative_id": creative.id,
                      "variant": variant.id, "width": width, "height": height}
            if creative.format == "html":
                answer["html"] = variant.html
            else:
                answer["image_url"] = absolute(variant.image_url, base_url)
            answer["impression_url"] = answer["click_url"] = None  # per page: set on a copy, in place
            record = {"slot": slot.id, "placement": slot.placement, "campaign": campaign.id,
                      "creative": creative.id, "variant": variant.id}
        else:
            answer = {"item_id": f"ad-{creative.id}-{variant.id}", "title": variant.title,
                      "url": creative.landing_url, "image_url": absolute(variant.image_url, base_url),
                      "sponsored": True, "advertiser": campaign.advertiser, "campaign_id": campaign.id,
                      "click_url": None, "impression_url": None}
        head = {"c": campaign.id, "cr": creative.id, "v": variant.id, "l": creative.landing_url, "s": slot.id}
        if slot.placement is not None:
            head["pl"] = slot.placement
        if strategy is not None:  # reports compare a widget's natives with its articles
            head["st"] = strategy
        return cls(variant, creative, campaign, answer, record, signer.head(head))


def _keep(kept: dict, key, value, most: int):
    if len(kept) >= most:
        kept.clear()
    kept[key] = value
    return value


class SlotServer:
    def __init__(self, signer: Signer, events: EventSink, catalog: Catalog,
                 recommender: Recommender, discovery: CatalogDiscovery, clock=time.time) -> None:
        self.signer = signer
        self.events = events
        self.catalog = catalog
        self.recommender = recommender
        self.discovery = discovery
        self._clock = clock  # Unix seconds: the server's clock, which the log and tracking use too

    async def serve(self, runtime: Runtime, request: SlotRequest, base_url: str) -> dict:
        page = request.page
        if page.item_id is not None and page.item_id not in self.catalog.items:  # context, nothing more
            self.discovery.suggest(page.item_id, page.url, runtime.config.site)
        layout = runtime.layout(request.slots)
        sponsored = layout.sponsored
        fills = await runtime.decider.decide(request, layout.needs)
        answer: dict[str, dict] = {}
        logged: list[dict] = []
        on_page: set[str] = set()
        for slot in request.slots:
            if slot.type == "display":
                answer[slot.id], record = self._display(runtime, slot, fills.get(slot.id), request, base_url)
            else:
                answer[slot.id], record = self._recs(runtime, slot, sponsored[slot.id],
                                                     fills, request, base_url, on_page)
            logged.append(record)
        reader = request.consent.content_reader(request.user_id)  # reads train the reader's recs
        now = self._clock()
        await self.events.write({"ts": now, "type": "decision", "user": reader, "page": page.item_id,
                            "device": request.device, "consent": request.consent.label, "slots": logged})
        self.recommender.record("decision", reader, page.item_id, now)
        return answer

    def _token(self, payload: dict, slot: Slot, request: SlotRequest, strategy: str) -> str:
        """A widget's ``payload`` signed with what its hits' events carry of the page: its slot and
        page, the placement and widget strategy reports group them by, and the request's consent."""
        payload["s"] = slot.id
        payload["p"] = request.page.item_id
        if slot.placement is not None:
            payload["pl"] = slot.placement
        payload["st"] = strategy
        if request.consent.signalled:
            payload["k"] = request.consent.label
        return self.signer.sign(payload)

    def _display(self, runtime: Runtime, slot: Slot, fill: Fill | None, request: SlotRequest, base_url: str):
        """A display slot's answer and decision record."""
        if fill is None:
            return {"type": "display", "fill": False}, {"slot": slot.id, "placement": slot.placement,
                                                         "fill": False}
        shown = runtime.shown_ad(slot, fill, base_url, self.signer)
        return self._ad(shown, fill, request, base_url), shown.record

    def _ad(self, shown: _Shown, fill: Fill, request: SlotRequest, base_url: str) -> dict:
        """An ad's answer with its tracking URLs. Its token says what a click and a pixel may
        claim: the kept head (campaign, creative, variant, landing URL: the only place a click on
        it may go, slot, placement, a native's strategy), then the page's reader as ads may use
        it, page, reservation (the pixel confirms it) and consent, so only those are serialised
        per page."""
        consent = request.consent
        varying = {"u": consent.ads_reader(request.user_id), "p": request.page.item_id}
        if fill.reservation is not None:
            varying["r"] = fill.reservation
        if consent.signalled:
            varying["k"] = consent.label
        token = self.signer.sign(varying, shown.token)
        answer = shown.answer.copy()  # a copy of a whole dict: its key table in one piece, no merge
        answer["impression_url"] = f"{base_url}/t/i?t={token}"
        answer["click_url"] = f"{base_url}/t/c?t={token}"
        return answer

    def _recs(self, runtime: Runtime, slot: Slot, positions: list[int], fills: dict, request: SlotRequest,
              base_url: str, on_page: set[str]):
        """A widget's answer and decision record: its articles, each the catalog's kept card merged
        with its click URL (the widget's token, with its position) in one dict made in C, and its
        natives at their positions."""
        sponsored: dict[int, Fill] = {}  # a loop: a comprehension is a call of its own (Python 3.11)
        for position in positions:
            if (fill := fills.get(f"{slot.id}#{position}")) is not None:
                sponsored[position] = fill
        consent = request.consent
        reader = consent.content_reader(request.user_id)
        rec = self.recommender.recommend(consent.strategy(_strategy(runtime, slot)), reader,
                                         request.page.item_id, slot.count - len(sponsored), on_page)
        picked, strategy = rec.items, rec.strategy
        on_page.update(picked)
        token = self._token({"u": reader, "its": picked}, slot, request, strategy)
        click = f"{base_url}/t/c?t={token}&i="
        items = [{**card, "click_url": f"{click}{position}"}
                 for position, card in enumerate(self.catalog.cards(picked, base_url))]
        for position in sorted(sponsored):  # at its position; past the articles, after them (insert clamps)
            fill = sponsored[position]
            items.insert(position - 1, self._ad(runtime.shown_ad(slot, fill, base_url, self.signer, strategy),
                                                fill, request, base_url))
        answer = {"type": "recs", "strategy": strategy, "items": items, "impression_url": f"{base_url}/t/i?t={token}"}
        return answer, {"slot": slot.id, "placement": slot.placement, "strategy": strategy, "items": picked,
                        "sponsored": [fill.campaign.id for fill in sponsored.values()]}


@functools.cache
def _dimensions(size: str) -> tuple[int, int]:
    """A display size's width and height (``300x250``), worked out once per size."""
    width, height = size.split("x")
    return int(width), int(height)


def _placement(runtime: Runtime, slot: Slot) -> Placement | None:
    return runtime.config.placements.get(slot.placement) if slot.placement else None


def _strategy(runtime: Runtime, slot: Slot) -> str:
    placement = _placement(runtime, slot)
    return placement.strategy if placement else "personal"


def _sponsored_positions(runtime: Runtime, slot: Slot) -> list[int]:
    """The widget positions sold to native campaigns, as its placement says."""
    placement = _placement(runtime, slot)
    return [p for p in placement.sponsored_positions if p <= slot.count] if placement else []
