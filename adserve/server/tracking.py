"""Impression pixels and click redirects, from signed tokens only.

A hit is verified, deduplicated by its token's nonce, classified as bot or not, appended to the
event log (before the answer goes out), and only then charged to the campaign's counters.
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from ..events import EventLog
from ..recs.recommender import Recommender
from ..state import StateStore
from ..tokens import Signer, TokenError

BOT_AGENTS = re.compile(r"bot|crawl|spider|slurp|facebookexternalhit|bingpreview|mediapartners",
                        re.IGNORECASE)
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}
_KINDS = {"i": "impression", "c": "click"}
SAFE_URL = re.compile(r"^https?://[^\x00-\x20\x7f]+$")  # no whitespace: nothing to inject into headers


def token_key(nonce: str) -> str:
    """The state key that marks a token as already counted."""
    return f"tok:{nonce}"


class Tracker:
    def __init__(self, signer: Signer, state: StateStore, events: EventLog,
                 recommender: Recommender, metrics, clock) -> None:
        self.signer = signer
        self.state = state
        self.events = events
        self.recommender = recommender
        self.metrics = metrics
        self.clock = clock

    async def hit(self, token: str, kind: str, user_agent: str, runtime) -> dict:
        """Record one hit; returns the verified payload. Raises ``TokenError`` when refused."""
        payload = self.signer.verify(token)
        if payload.get("k") != kind:
            raise TokenError(f"not a{'n' if kind == 'i' else ''} {_KINDS[kind]} token", 400)
        bot = bool(BOT_AGENTS.search(user_agent))
        fresh = await self.state.first_time(token_key(payload["n"]), self.signer.ttl)
        counted = fresh and not bot
        name = _KINDS[kind]
        self.events.append({
            "type": name, "user": payload.get("u"), "page": payload.get("p"), "slot": payload.get("s"),
            "campaign": payload.get("c"), "creative": payload.get("cr"), "variant": payload.get("v"),
            "item": payload.get("it"), "items": payload.get("its"), "url": payload.get("l"),
            "bot": bot, "counted": counted, "token": payload["n"]})
        self.metrics.events.labels(name).inc()
        outcome = "counted" if counted else ("bot" if bot else "duplicate")
        self.metrics.tracking.labels(name, outcome).inc()
        if counted:
            await self._charge(payload, name, runtime)
        return payload

    async def _charge(self, payload: dict, name: str, runtime) -> None:
        now = self.clock()
        self.recommender.record(name, payload.get("u"), payload.get("it"), now.timestamp())
        campaign = runtime.decider.inventory.campaigns.get(payload.get("c"))
        if campaign is not None:
            ledger = runtime.decider.ledger
            increments, ttl = ledger.charge(campaign, name, payload.get("u"), ledger.moment(now))
            await self.state.add(increments, ttl)


async def impression(server, request: web.Request) -> web.Response:
    await server.tracker.hit(request.query.get("t", ""), "i", request.headers.get("User-Agent", ""),
                             server.runtime)
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)


async def click(server, request: web.Request) -> web.Response:
    payload = await server.tracker.hit(request.query.get("t", ""), "c",
                                       request.headers.get("User-Agent", ""), server.runtime)
    landing = payload.get("l")
    if not isinstance(landing, str) or not SAFE_URL.match(landing):
        raise TokenError("token carries no landing URL", 400)
    return web.Response(status=302, headers={"Location": landing, **NO_CACHE})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
