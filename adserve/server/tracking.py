"""Impression pixels and click redirects, from signed tokens only.

An answer signs one token per ad and one per widget; the pixel and the click URLs share it, and a
click on a widget names the item's position (``i``). A hit is verified, deduplicated per kind,
token and position, classified as bot or not, appended to the event log (before the answer goes
out), and only then charged to the campaign's counters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import secrets
from dataclasses import dataclass

from aiohttp import web

from ..catalog import Catalog, absolute
from ..events import EventSink
from ..recs.recommender import Recommender
from ..state import StateStore, StateUnavailable, claim
from ..tokens import Signer, TokenError

BOT_AGENTS = re.compile(r"bot|crawl|spider|slurp|facebookexternalhit|bingpreview|mediapartners",
                        re.IGNORECASE)
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}
SAFE_URL = re.compile(r"https?://[^\x00-\x20\x7f]+")  # no whitespace: nothing to inject into headers
POSITION = re.compile(r"0|[1-9][0-9]?")  # canonical only: "00" or "0\n" must not count a click again


def token_key(kind: str, hit_id: str) -> str:
    """The state key that marks a hit as already counted."""
    return f"tok:{kind}:{hit_id}"


@dataclass(frozen=True)
class Hit:
    """One verified impression or click: what is logged, deduplicated and charged."""
    kind: str        # "impression" or "click"
    payload: dict    # the verified token
    id: str          # the token's nonce, plus the item's position for a click in a widget
    item: str | None = None
    url: str | None = None

    @classmethod
    def impression(cls, payload: dict) -> "Hit":
        return cls("impression", payload, payload["n"])

    @classmethod
    def click(cls, payload: dict, position: str | None, catalog: Catalog, base_url: str) -> "Hit":
        """An ad's click goes to the landing URL signed in its token; a widget item's to its article."""
        items = payload.get("its")
        if items is None:
            return cls("click", payload, payload["n"], url=_safe(payload.get("l")))
        if position is None or not POSITION.fullmatch(position) or int(position) >= len(items):
            raise TokenError(f"expected i, the clicked item's position (0-{len(items) - 1})", 400)
        item = catalog.items.get(items[int(position)])
        if item is None:
            raise TokenError("the article is no longer in the catalog", 410)
        return cls("click", payload, f"{payload['n']}:{position}", item=item.item_id,
                   url=_safe(absolute(item.url, base_url)))


def _safe(url: object) -> str:
    if not isinstance(url, str) or not SAFE_URL.fullmatch(url):
        raise TokenError("no safe landing URL for this click", 400)
    return url


class Tracker:
    def __init__(self, signer: Signer, state: StateStore, events: EventSink,
                 recommender: Recommender, metrics, clock) -> None:
        self.signer = signer
        self.state = state
        self.events = events
        self.recommender = recommender
        self.metrics = metrics
        self.clock = clock
        self._attempt_prefix = secrets.token_hex(6)  # attempts stay apart across replicas and restarts
        self._attempts = itertools.count()

    async def record(self, hit: Hit, user_agent: str, runtime) -> None:
        """Log the hit, counted unless a bot's or a repeat, billable if within its campaign's limits.

        The token is marked first (atomically, so two replicas never both count it), and the
        mark is dropped again if the event cannot be written: the client's retry then counts
        once. Billing is idempotent per hit, so that retry moves no counter twice. While the
        shared store is down the hit is logged undecided (``counted`` null) with its ``attempt``,
        and settled by ``reconcile`` once it is back: if the store did settle it (its answer came
        after the wait), that attempt holds the mark and reads the outcome, never a repeat.
        """
        p = hit.payload
        event = {"type": hit.kind, "user": p.get("u"), "page": p.get("p"), "slot": p.get("s"),
                 "campaign": p.get("c"), "creative": p.get("cr"), "variant": p.get("v"), "item": hit.item,
                 "items": p.get("its") if hit.kind == "impression" else None, "url": hit.url,
                 "bot": bool(BOT_AGENTS.search(user_agent)), "token": hit.id, "consent": p.get("k"),
                 "placement": p.get("pl"), "strategy": p.get("st"),
                 "sponsored": None if p.get("st") is None else p.get("c") is not None}
        key = token_key(hit.kind, hit.id)
        attempt = self._attempt()
        try:
            fresh = await self._settle(event, runtime, p.get("r"), attempt)
        except StateUnavailable:
            fresh, event["counted"], event["billable"], event["attempt"] = False, None, None, attempt
        try:
            await self.events.write(event)
        except BaseException:
            if fresh:
                with contextlib.suppress(StateUnavailable):
                    await self.state.forget(key)
            raise
        self._counted(event)

    async def reconcile(self, event: dict, runtime) -> None:
        """Settle a hit logged while the store was down, and log the outcome beside it."""
        settled = {**event, "ts": self.clock().timestamp(), "hit_ts": event["ts"], "reconciled": True}
        await self._settle(settled, runtime, None, event.get("attempt") or self._attempt())
        await self.events.write(settled)
        self._counted(settled)

    def _attempt(self) -> str:
        """A new id for one try at settling a hit: what its token mark holds (``claim``)."""
        return f"{self._attempt_prefix}{next(self._attempts):x}"

    async def _settle(self, event: dict, runtime, reservation: str | None, attempt: str) -> bool:
        """Mark the token for ``attempt``, then bill the campaign (none for a widget, nor a bot's
        hit), in one store call: sets ``counted`` and ``billable`` on ``event``, and the ``charge``
        (spend added, micro-units) of a billable one. Whether the token was fresh."""
        key = token_key(event["type"], event["token"])
        if event["campaign"] is None or event["bot"]:
            fresh = await claim(self.state, key, attempt, self.signer.ttl)
            billable = None if event["campaign"] is None else False
        else:
            billed = await runtime.decider.bill(event["type"], event["campaign"], event["user"], event["token"],
                                                self.signer.ttl, reservation, mark=(key, attempt))
            fresh, billable = billed is not None, bool(billed)
        counted = fresh and not event["bot"]
        event["counted"], event["billable"] = counted, billable
        if billable:
            event["charge"] = runtime.decider.charge_micros(event["type"], event["campaign"])
            await runtime.decider.allocation.count(event, self.signer.ttl)
        return fresh

    def _counted(self, event: dict) -> None:
        counted = event["counted"]
        self.metrics.count(self.metrics.events, event["type"])
        outcome = ("deferred" if counted is None else "counted" if counted
                   else "bot" if event["bot"] else "duplicate")
        self.metrics.count(self.metrics.tracking, event["type"], outcome)
        if counted:
            self.recommender.record(event["type"], event["user"], event["item"], self.clock().timestamp())


async def impression(server, request: web.Request) -> web.Response:
    hit = Hit.impression(server.signer.verify(request.query.get("t", "")))
    await server.tracker.record(hit, request.headers.get("User-Agent", ""), server.runtime)
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)


async def click(server, request: web.Request) -> web.Response:
    hit = Hit.click(server.signer.verify(request.query.get("t", "")), request.query.get("i"),
                    server.catalog, server.base_url(request))
    await server.tracker.record(hit, request.headers.get("User-Agent", ""), server.runtime)
    return web.Response(status=302, headers={"Location": hit.url, **NO_CACHE})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
