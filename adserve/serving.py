"""One slot request in, one answer out: decisions, recommendations, signed tracking URLs.

Data flows one way: the request is decided (``decision``), recommended (``recs``), turned into the
answer with signed URLs, and the decision is appended to the event log before the answer leaves.
One token is signed per ad (its pixel and click URL share it) and one per widget (its pixel, and
its items' click URLs with their position), so a page answer costs a handful of signatures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .catalog import Catalog, absolute
from .catalog_discovery import CatalogDiscovery
from .decision import AdNeed, Decider, Fill
from .events import EventSink
from .model import Config, Placement
from .recs.recommender import Recommender
from .request import Slot, SlotRequest
from .tokens import Signer


@dataclass
class Runtime:
    """What one config produces; swapped as a whole on reload."""
    config: Config
    decider: Decider


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
        sponsored = {slot.id: _sponsored_positions(runtime, slot) for slot in request.slots
                     if slot.type == "recs"}
        needs = [AdNeed(slot.id, slot.sizes, slot.placement) for slot in request.slots
                 if slot.type == "display"]  # display first: it may take a campaign the widget wants
        needs += [AdNeed(f"{slot.id}#{p}", ("native",), slot.placement)
                  for slot in request.slots if slot.type == "recs" for p in sponsored[slot.id]]
        fills = await runtime.decider.decide(request, needs)
        answer: dict[str, dict] = {}
        logged: list[dict] = []
        on_page: set[str] = set()
        for slot in request.slots:
            if slot.type == "display":
                answer[slot.id], record = self._display(slot, fills.get(slot.id), request, base_url)
            else:
                answer[slot.id], record = self._recs(_strategy(runtime, slot), slot, sponsored[slot.id],
                                                     fills, request, base_url, on_page)
            logged.append(record)
        reader = request.consent.content_reader(request.user_id)  # reads train the reader's recs
        now = self._clock()
        await self.events.write({"ts": now, "type": "decision", "user": reader, "page": page.item_id,
                            "device": request.device, "consent": request.consent.label, "slots": logged})
        self.recommender.record("decision", reader, page.item_id, now)
        return answer

    def _urls(self, base_url: str, request: SlotRequest, payload: dict) -> tuple[str, str]:
        """The impression pixel and click URLs of one signed token (with the request's consent,
        which the hits' events carry)."""
        if request.consent.signalled:
            payload["k"] = request.consent.label
        token = self.signer.sign(payload)
        return f"{base_url}/t/i?t={token}", f"{base_url}/t/c?t={token}"

    def _ad_urls(self, slot: Slot, fill: Fill, request: SlotRequest, base_url: str,
                 strategy: str | None = None) -> tuple[str, str]:
        """``strategy``: the widget's, for a native ad among its items (reports compare the two)."""
        payload = {"c": fill.campaign.id, "cr": fill.creative.id, "v": fill.variant.id, "s": slot.id,
                   "u": request.consent.ads_reader(request.user_id), "p": request.page.item_id,
                   "l": fill.creative.landing_url, **_grouping(slot, strategy)}
        if fill.reservation is not None:
            payload["r"] = fill.reservation  # the pixel confirms it
        return self._urls(base_url, request, payload)

    def _display(self, slot: Slot, fill: Fill | None, request: SlotRequest, base_url: str):
        if fill is None:
            return {"type": "display", "fill": False}, {"slot": slot.id, "placement": slot.placement,
                                                         "fill": False}
        impression, click = self._ad_urls(slot, fill, request, base_url)
        width, height = map(int, fill.creative.size.split("x"))
        content = ({"html": fill.variant.html} if fill.creative.format == "html"
                   else {"image_url": absolute(fill.variant.image_url, base_url)})
        answer = {"type": "display", "fill": True, "campaign_id": fill.campaign.id,
                  "creative_id": fill.creative.id, "variant": fill.variant.id, "width": width,
                  "height": height, **content, "impression_url": impression, "click_url": click}
        return answer, {"slot": slot.id, "placement": slot.placement, "campaign": fill.campaign.id,
                        "creative": fill.creative.id, "variant": fill.variant.id}

    def _recs(self, strategy: str, slot: Slot, positions: list[int], fills: dict, request: SlotRequest,
              base_url: str, on_page: set[str]):
        sponsored = {p: fill for p in positions if (fill := fills.get(f"{slot.id}#{p}")) is not None}
        organic_count = slot.count - len(sponsored)
        reader = request.consent.content_reader(request.user_id)
        rec = self.recommender.recommend(request.consent.strategy(strategy), reader,
                                         request.page.item_id, organic_count, on_page)
        on_page.update(rec.items)
        impression, click = self._urls(base_url, request, {"s": slot.id, "u": reader, "p": request.page.item_id,
                                                           "its": rec.items, **_grouping(slot, rec.strategy)})
        organic = iter(self._organic(rec.items, click, base_url))
        items = []
        for position in range(1, slot.count + 1):
            fill = sponsored.get(position)
            entry = (self._native(slot, fill, request, base_url, rec.strategy) if fill
                     else next(organic, None))
            if entry is not None:
                items.append(entry)
        answer = {"type": "recs", "strategy": rec.strategy, "items": items,
                  "impression_url": impression}
        return answer, {"slot": slot.id, "placement": slot.placement, "strategy": rec.strategy,
                        "items": rec.items,
                        "sponsored": [f.campaign.id for f in sponsored.values()]}

    def _organic(self, item_ids: list[str], click: str, base_url: str) -> list[dict]:
        entries = self.catalog.cards(item_ids, base_url)
        for position, entry in enumerate(entries):
            entry["click_url"] = f"{click}&i={position}"
        return entries

    def _native(self, slot: Slot, fill: Fill, request: SlotRequest, base_url: str, strategy: str) -> dict:
        impression, click = self._ad_urls(slot, fill, request, base_url, strategy)
        return {"item_id": f"ad-{fill.creative.id}-{fill.variant.id}", "title": fill.variant.title,
                "url": fill.creative.landing_url, "image_url": absolute(fill.variant.image_url, base_url),
                "sponsored": True, "advertiser": fill.campaign.advertiser,
                "campaign_id": fill.campaign.id, "click_url": click, "impression_url": impression}


def _grouping(slot: Slot, strategy: str | None) -> dict:
    """What a token adds for reports to group its hits by: the placement and the widget's strategy."""
    return {key: value for key, value in (("pl", slot.placement), ("st", strategy)) if value is not None}


def _placement(runtime: Runtime, slot: Slot) -> Placement | None:
    return runtime.config.placements.get(slot.placement) if slot.placement else None


def _strategy(runtime: Runtime, slot: Slot) -> str:
    placement = _placement(runtime, slot)
    return placement.strategy if placement else "personal"


def _sponsored_positions(runtime: Runtime, slot: Slot) -> list[int]:
    """The widget positions sold to native campaigns, as its placement says."""
    placement = _placement(runtime, slot)
    return [p for p in placement.sponsored_positions if p <= slot.count] if placement else []
