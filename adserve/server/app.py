"""The aiohttp application: routes behind one front door, and background tasks, wired together.

``AdServer`` owns the long-lived parts (state store, event log, catalog, recommender, signer);
a ``Runtime`` (config + decider) is rebuilt on each good reload (``reload.py`` notices and checks
it) and swapped in one assignment, so a request sees either the old config or the new one, never
a mix. Counters live in the state store, outside the runtime, so caps and budgets survive
reloads; the link to a shared store is ``state_link.py``, catalog sharing ``catalog_feed.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import signal
import time
from pathlib import Path

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from .. import iowait, retention
from ..catalog import Catalog, CatalogError, item_from_dict
from ..catalog_discovery import CatalogDiscovery
from ..config import LoadResult
from ..decision import Decider, Inventory
from ..events import LogUnavailable, open_sink
from ..ledger import Ledger
from ..model import Config, Recs
from ..model import Server as ServerSettings
from ..recs.recommender import Recommender
from ..recs.tune import TUNED_FILE, tuned
from ..request import BadRequest, parse_slot_request
from ..serving import Runtime, SlotServer
from ..state import MemoryState, RedisState, StateStore, StateUnavailable
from ..tokens import Signer, TokenError
from . import fastlane, listener, pages, report_page, static, tracking
from .auth import bearer_matches
from .catalog_feed import CatalogFeed
from .metrics import Metrics
from .openapi import openapi_spec
from .reload import Reloader
from .replay import Replay
from .retraining import train_elsewhere
from .state_link import StateLink

log = logging.getLogger("adserve")
SERVER: web.AppKey["AdServer"] = web.AppKey("server")
SLOTS = "/v1/slots"  # the route whose requests are shed past capacity (``_overloaded``)
SEC_GPC = istr("Sec-GPC")  # a header name given as istr is looked up without being case-folded again
#: What ``GET /v1/config/status`` shows without the admin token: counts, never files or messages.
PUBLIC_STATUS = {"config": ("ok", "applied", "checked_at", "error_count", "warning_count",
                            "active_file_count", "active_campaigns"),
                 "model": ("loaded", "trained_at")}


_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")  # RFC 3986's, bounded

#: A JSON answer's headers: ``web.Response`` copies them, which is cheaper than building them
JSON_HEADERS = CIMultiDict({hdrs.CONTENT_TYPE: "application/json"})


def json_response(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    if headers is None:
        return web.Response(body=orjson.dumps(data), status=status, headers=JSON_HEADERS)
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def json_error(status: int, error: str, detail: str, headers: dict | None = None) -> web.Response:
    return json_response({"error": error, "detail": detail}, status, headers)


class AdServer:
    def __init__(self, config_dir: str | Path, loaded: LoadResult, secret: bytes,
                 state: StateStore | None = None, clock=tracking.utc_now, rng=None,
                 writer: str = "main", cms_token: str | None = None,
                 admin_token: str | None = None) -> None:
        config = loaded.config
        self.config_dir = Path(config_dir)
        self.clock = clock
        self.rng = rng
        self.metrics = Metrics()
        settings = config.server
        # one clock for counters, log and tokens; the real one without a datetime per call
        unix_now = time.time if clock is tracking.utc_now else lambda: clock().timestamp()
        self.state = state if state is not None else (
            RedisState(settings.redis_url, clock=unix_now) if settings.redis_url else MemoryState(unix_now))
        self.events = open_sink(settings.event_dir, settings.events, writer, settings.retention_days,
                                unix_now)
        self.catalog = Catalog.load(self.config_dir / settings.catalog_path,
                                    Path(settings.event_dir) / "catalog-updates.jsonl")
        self.model_path = Path(settings.model_path)
        self.recommender = Recommender(self.catalog, self._recs(config), rng)
        self.signer = Signer(secret, settings.token_ttl_seconds)
        self.discovery = CatalogDiscovery(self.catalog, functools.partial(self.metrics.count,
                                                                          self.metrics.discovery))
        self.slots = SlotServer(self.signer, self.events, self.catalog, self.recommender, self.discovery,
                                unix_now)
        self.tracker = tracking.Tracker(self.signer, self.state, self.events, self.recommender,
                                        self.metrics, clock)
        self.replay = Replay(self.events, self.state, self.recommender, self.signer.ttl, clock)
        self.catalog_feed = CatalogFeed(self.catalog, self.state)
        self.state_link = StateLink(self.state, self.replay, self.events, self.tracker,
                                    lambda: self.runtime, clock)
        self.cms_token = cms_token
        self.admin_token = admin_token
        self.runtime = self._runtime(config)
        self.reloader = Reloader(self.config_dir, self.model_path, loaded, self._apply_config,
                                 lambda: self.runtime.config, self.recommender.use_model,
                                 self.metrics.reload_errors.inc)
        self.status = self.reloader.status
        self.reload_config, self.reload_model = self.reloader.reload_config, self.reloader.reload_model
        self.in_flight = 0  # slot requests admitted and not yet answered
        self.metrics.state_up.set_function(lambda: 0.0 if getattr(self.state, "down", False) else 1.0)
        self.metrics.state_rebuilding.set_function(lambda: float(getattr(self.state, "rebuilding", False)))

    # -- config and model ---------------------------------------------------------------------
    def _runtime(self, config: Config) -> Runtime:
        ledger = Ledger(config.site.timezone, self.replay.traffic)
        decider = Decider(Inventory(config), ledger, self.state, config.site.unique_advertiser_per_page,
                          self.rng, self.clock, config.server.reservation_seconds)
        return Runtime(config, decider)

    def _apply_config(self, config: Config) -> None:
        """A reloaded config goes live: one assignment, so a request sees the old or the new one."""
        self.runtime = self._runtime(config)
        self.recommender.recs = self._recs(config)

    def _recs(self, config: Config) -> Recs:
        """The config's recs settings with the last `adserve tune` choice (beside the model) applied."""
        return tuned(config.recs, self.model_path.with_name(TUNED_FILE))

    # -- handlers -----------------------------------------------------------------------------
    def base_url(self, request: web.Request) -> str:
        """``public_url``, or (the demo) the request's own scheme and host; a Host header that is
        no host name or address with an optional port is a 400: answers echo it, and serving and
        the catalog keep URLs per base URL."""
        public = self.runtime.config.server.public_url
        if public:
            return public
        host = request.host
        if not _HOST.fullmatch(host):
            raise BadRequest("Host", "expected a host name or address, with an optional port")
        return f"{request.scheme}://{host}"

    async def handle_slots(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        runtime = self.runtime
        body = await read_json(request, runtime.config.server)
        slot_request = parse_slot_request(body, runtime.config.placements, runtime.config.server.max_slots,
                                          gpc_header=request.headers.get(SEC_GPC, "").strip() == "1",
                                          consent_required=runtime.config.site.consent_required)
        answer = await self.slots.serve(runtime, slot_request, self.base_url(request))
        self.metrics.answered(answer, time.perf_counter() - started)
        return fastlane.JsonAnswer(orjson.dumps({"slots": answer}), JSON_HEADERS)

    async def handle_item(self, request: web.Request) -> web.Response:
        refused = operator_only(request, self.cms_token, "item upserts", "ADSERVE_CMS_TOKEN")
        if refused is not None:
            return refused
        body = await read_json(request, self.runtime.config.server)
        if isinstance(body, dict):
            body = {**body, "item_id": request.match_info["item_id"]}
        try:
            item = item_from_dict(body)
        except CatalogError as exc:
            raise BadRequest("body", str(exc)) from exc
        try:
            self.catalog.upsert(item)
        except OSError as exc:
            raise LogUnavailable(f"catalog journal: {exc}") from exc
        return json_response({"item_id": item.item_id, "live": item.live})

    async def handle_health(self, request: web.Request) -> web.Response:
        """Alive (200) either way; ``degraded`` names what cannot work now, e.g. the event log."""
        failing = (["event_log"] * self.events.failing + ["event_stream"] * getattr(self.events, "down", False)
                   + ["state"] * getattr(self.state, "down", False)
                   + ["state_rebuild"] * getattr(self.state, "rebuilding", False))
        return json_response({"status": "degraded" if failing else "ok", "failing": failing,
                              "config_ok": self.status["config"]["ok"],
                              "model_loaded": self.status["model"]["loaded"]})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def handle_status(self, request: web.Request) -> web.Response:
        """Counts for anyone (monitoring); files, lines and messages only for the operator."""
        if "Authorization" not in request.headers:
            return json_response({part: {key: value for key, value in self.status[part].items()
                                         if key in keys} for part, keys in PUBLIC_STATUS.items()})
        refused = operator_only(request, self.admin_token, "status details", "ADSERVE_ADMIN_TOKEN")
        if refused is not None:
            return refused
        return json_response(self.status)

    async def handle_openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_spec(self.base_url(request)))

    # -- lifecycle ----------------------------------------------------------------------------
    async def start_background(self, app: web.Application) -> None:
        self.expire_events()  # before the replay, which must not read what retention deletes
        self.replay.run(self.runtime.decider)
        self.runtime = self._runtime(self.runtime.config)  # pacing learns the log's hourly traffic
        try:
            await self.state_link.connect()
            await self.catalog_feed.sync()  # what other workers and replicas added to the catalog
        except StateUnavailable:
            log.error("state store unreachable at start: serving campaigns without limits until it is back")
        jobs = [*(watcher.run() for watcher in self.reloader.watchers()), self.events.sync_forever(),
                self._retrain_on_schedule(), self._expire_daily(), self.replay.save_forever(),
                self.discovery.run(), self.state_link.watch(), self.catalog_feed.run()]
        self.tasks = [asyncio.create_task(job) for job in jobs]
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self.reloader.trigger)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (tests) or no signals on this platform

    async def retrain(self) -> None:
        """Fit a new model on the event log in another process (``retraining.py``); the model
        watcher then swaps it in."""
        events = await asyncio.to_thread(self.replay.history)
        await train_elsewhere(self.config_dir, events, self.model_path)

    async def _retrain_on_schedule(self) -> None:
        """``recs.retrain_minutes`` (read at each round, so a reload can change it)."""
        while True:
            minutes = self.runtime.config.recs.retrain_minutes
            await asyncio.sleep(60 * (minutes or 1))
            if minutes and self.runtime.config.recs.retrain_minutes:
                await self.scheduled_retrain(minutes)

    async def scheduled_retrain(self, minutes: int) -> bool:
        """Retrain, unless another worker or replica has this round of the schedule: one fit serves
        them all (each watches the model file), and N fits of one log would take N cores.

        A round is a ``minutes``-long span of the clock; each process's timer fires once in every
        round, and the first to claim it in the store trains.
        """
        round_ = int(self.clock().timestamp() // (60 * minutes))
        try:
            claimed = await self.state.first_time(f"retrain:{minutes}:{round_}", 2 * 60 * minutes)
        except StateUnavailable:
            log.warning("scheduled retrain skipped: the state store is unreachable")
            return False
        if claimed:
            await self.retrain()
        return claimed

    def expire_events(self) -> None:
        """``server.retention_days``: delete event files past their age (at start, then daily)."""
        days = self.runtime.config.server.retention_days
        if days:
            expired = [path for folder in self.replay.folders
                       for path in retention.expire(folder, days, self.clock().date())]
            if expired:
                log.info("retention: deleted %d event files older than %d days", len(expired), days)

    async def _expire_daily(self) -> None:
        while True:
            await asyncio.sleep(86400)
            await asyncio.to_thread(self.expire_events)

    async def stop_background(self, app: web.Application) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        await asyncio.gather(*getattr(self, "tasks", []), return_exceptions=True)
        self.replay.save()
        await self.events.aclose()
        await self.state.close()


def operator_only(request: web.Request, token: str | None, what: str, variable: str) -> web.Response | None:
    """The refusal of an operator endpoint: 403 while its token is unset, 401 for a wrong one."""
    if not token:
        return json_error(403, "forbidden", f"{what} are disabled: set {variable}")
    if not bearer_matches(request, token):
        return json_error(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
    return None


class UnreadableBody(BadRequest):
    """A body aiohttp could not read to its end: nothing more of it will be read (aiohttp would
    try once more after the answer, and log that as its own failure), and the answer closes the
    connection, whose next bytes cannot be framed."""

    def __init__(self, request: web.Request, message: str) -> None:
        super().__init__("body", f"unreadable: {message}")
        request.content.feed_eof()


async def read_json(request: web.Request, settings: ServerSettings) -> object:
    """The body as JSON: at most ``max_body_bytes``, received within ``body_timeout_seconds``."""
    limit = settings.max_body_bytes
    content = request.content
    if content.is_eof():  # it came with the head: all buffered, no timer, no read loop; its
        raw = content.read_nowait()  # length is the declared one, checked below
    else:
        declared = request.content_length
        if declared is not None and declared > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
        try:
            async with asyncio.timeout(settings.body_timeout_seconds):
                raw = await request.clone(client_max_size=limit).read()  # the limit in force now, not start-up's
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from None
        except web.RequestPayloadError as exc:  # e.g. a Content-Encoding its bytes do not follow
            raise UnreadableBody(request, getattr(exc.__cause__, "message", str(exc))) from None
        except ConnectionResetError:  # the client left mid-body: its doing, not a failure of ours
            raise UnreadableBody(request, "the connection closed before the body arrived") from None
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("body", f"malformed JSON: {exc}") from exc


async def front(server: AdServer, handler, route: str | None, request: web.Request) -> web.StreamResponse:
    """What every request passes through: CORS, then load shedding (slot requests), then JSON
    error answers; each answer counted by its ``route`` (path template; None: no route has it).

    ``create_app`` puts it in front of every route's handler, and of a last route for every
    other path, instead of making it a middleware: aiohttp runs middlewares through a wrapper
    chain and a middleware of its own, ~4 µs a request (PROFILE.md, seventh round). The concerns
    are plain calls in it, not a coroutine each, for the same reason.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    allowed = origin is not None and origin in server.runtime.config.site.allowed_origins
    slots = route == SLOTS if route is not None else request.path.startswith(SLOTS)
    if request.method == "OPTIONS" and origin is not None:
        response = _preflight(origin, allowed)
    elif slots and (refusal := _overloaded(server, request)) is not None:
        response = refusal
    else:
        if slots:
            server.in_flight += 1
            waits = iowait.track()
            started = time.perf_counter()
        try:
            response = await handler(request)
        except Exception as exc:
            response = _failure(server, request, exc)
        finally:
            if slots:
                server.in_flight -= 1
                listener.Work.add(started, waits[0])
        if route is None:
            route = (await _routes_at(request))[0]
        server.metrics.requested(route, response.status)
    if allowed:  # CORS for the configured page origins only; others get no CORS headers at all
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.VARY] = ", ".join(filter(None, (response.headers.get(hdrs.VARY), "Origin")))
    return response


def _preflight(origin: str, allowed: bool) -> web.Response:
    if not allowed:
        return json_error(403, "forbidden", f"origin {origin} is not allowed")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "GET, POST, PUT",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"})


def _overloaded(server: AdServer, request: web.Request) -> web.Response | None:
    """Past capacity, a slot request's 503 at once instead of queueing without bound.

    Two signals, both about the request itself: how many slot requests are already admitted and
    unanswered (``max_pending``: work waiting on I/O), and how much admitted work this one queued
    behind since its bytes arrived (``max_queue_ms``: waiting for the CPU). Refusals do not add
    to that work, so past overload the server keeps spending most of its time answering; a
    refusal costs microseconds.
    """
    settings = server.runtime.config.server
    reason = ("pending" if server.in_flight >= settings.max_pending
              else "waited" if listener.queued_behind(request) * 1000 > settings.max_queue_ms else None)
    if reason is None:
        return None
    server.metrics.count(server.metrics.shed, reason)
    return json_error(503, "overloaded", "try again shortly", {"Retry-After": "1"})


def _failure(server: AdServer, request: web.Request, exc: Exception) -> web.Response:
    """A handler's failure as a JSON error answer: never a traceback. Redirects go on up."""
    if isinstance(exc, BadRequest):
        response = json_error(400, "bad_request", str(exc))
        if isinstance(exc, UnreadableBody):
            response.force_close()
        return response
    if isinstance(exc, TokenError):
        return json_error(exc.status, "bad_token", str(exc), tracking.NO_CACHE)
    if isinstance(exc, LogUnavailable):
        log.error("%s %s refused: %s", request.method, request.path, exc)
        server.metrics.log_failures.inc()
        return json_error(503, "log_unavailable", "nothing was recorded; try again shortly",
                          {"Retry-After": "5", **tracking.NO_CACHE})
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason,
                          {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")})
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "internal", "internal error; it has been logged")


async def _routes_at(request: web.Request) -> tuple[str, set[str]]:
    """For a request no route answers: the first route's path template at its path and the
    methods routes allow there, or ``("none", set())`` where no route has the path."""
    route, allowed = "none", set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None and methods:  # the path is this resource's, the method is not
            route = route if allowed else resource.canonical
            allowed |= methods
    return route, allowed


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """The answer where no route has the path (404) or not with this method (405), as aiohttp's."""
    allowed = (await _routes_at(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


class _Anywhere(web.DynamicResource):
    """The front door's last route: any path, including ``*`` (``OPTIONS * HTTP/1.1``), which no
    path pattern matches (they all start with "/") and would be aiohttp's plain 404 otherwise."""

    def _match(self, path: str) -> dict[str, str]:
        return {"path": path}


def create_app(server: AdServer) -> web.Application:
    settings = server.runtime.config.server
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SERVER] = server

    def placements():  # read at each request: a reload swaps them
        return server.runtime.config.placements

    loader = static.Loader(placements)
    routes = [web.post(SLOTS, server.handle_slots), web.put("/v1/items/{item_id}", server.handle_item),
              web.get("/t/i", functools.partial(tracking.impression, server)),
              web.get("/t/c", functools.partial(tracking.click, server)),
              web.get("/healthz", server.handle_health), web.get("/metrics", server.handle_metrics),
              web.get("/v1/config/status", server.handle_status), web.get("/openapi.json", server.handle_openapi),
              *static.routes(loader), *pages.routes(server.catalog, loader.url, placements),
              *report_page.routes(server, os.environ.get("ADSERVE_REPORT_TOKEN"))]
    for route in routes:  # each behind the front door, which counts it by its path template
        template = app.router.add_resource(route.path).canonical
        handler = functools.partial(front, server, route.handler, template)
        registered = web.route(route.method, route.path, handler, **route.kwargs).register(app.router)
        if template == SLOTS:  # the one route with a fast lane (fastlane.py)
            app[fastlane.ROUTE] = registered[0]
    anywhere = _Anywhere("/{path}")  # last: every other path
    app.router.register_resource(anywhere)
    anywhere.add_route("*", functools.partial(front, server, _unrouted, None))
    app.on_startup.append(server.start_background)
    app.on_cleanup.append(server.stop_background)
    return app
