"""Discovery: articles the catalog does not know yet, learnt from the site's own pages.

A slot request may name a page the catalog has never seen (the CMS has not pushed it yet). Its
title, image and section are the requester's word: taking them planted headlines and off-site
images in every reader's widget and grew the catalog without bound. So a request only *suggests*
a URL, and only on one of the site's ``allowed_origins``; discovery fetches that page itself, the
way content-recommendation widgets learn a site, and reads the page's own metadata (Open Graph,
JSON-LD ``NewsArticle``). Until then the unknown id is context for the ad decision and nothing
more.

Everything is bounded: one fetch at a time at ``fetches_per_second``, a queue of ``queue_size``
URLs (more are dropped, not waited for), URLs pending or tried within ``retry_minutes`` are not
queued again, each page gets ``timeout_seconds`` and ``max_page_bytes``, redirects are followed
only within the site's origins, and only ``text/html`` is read. A page that names its own item id
(the loader's ``adserve-page`` block) must name the requested one, and a page already in the
catalog under another id is not added twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Callable
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from .catalog import LATEST_PUBLISHED, Catalog, CatalogError, item_from_dict
from .model import Discovery, Site

log = logging.getLogger("adserve.discovery")
MAX_REDIRECTS = 5
REMEMBERED_URLS = 10_000  # URLs tried recently; the oldest are forgotten first
REDIRECTS = (301, 302, 303, 307, 308)
ARTICLE_TYPES = {"Article", "NewsArticle", "ReportageNewsArticle", "AnalysisNewsArticle",
                 "OpinionNewsArticle", "BackgroundNewsArticle", "BlogPosting", "Report"}
OPEN_GRAPH = ("og:title", "og:image", "og:url", "article:section", "article:published_time")
_SPLIT_ALTERS = re.compile(r"[\x00-\x20]")  # what urlsplit strips or removes before it parses


class Refused(Exception):
    """The page cannot become an article; the message says why (logged, never raised to a reader)."""


@dataclass(frozen=True)
class Job:
    item_id: str
    url: str
    origins: frozenset[str]
    settings: Discovery


class CatalogDiscovery:
    """The queue of suggested pages and the one worker that fetches them (see the module doc)."""

    def __init__(self, catalog: Catalog, count: Callable[[str], None] = lambda outcome: None,
                 monotonic=time.monotonic) -> None:
        self.catalog = catalog
        self._count = count  # outcome: queued, dropped (queue full), discovered, refused, failed
        self._pending: OrderedDict[str, Job] = OrderedDict()  # by URL: the queue and its dedup
        self._tried: OrderedDict[str, float] = OrderedDict()  # URL -> when it may be tried again
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def suggest(self, item_id: str, url: str | None, site: Site) -> None:
        """Queue the page of an unknown item; on the hot path, so O(1) and never waits."""
        settings = site.discovery
        if not settings.enabled or not url:
            return
        url = on_site(url, site.allowed_origins)
        if url is None or url in self._pending or self._tried_recently(url) or self.catalog.has_url(url):
            return
        if len(self._pending) >= settings.queue_size:
            self._count("dropped")
            return
        self._pending[url] = Job(item_id, url, frozenset(site.allowed_origins), settings)
        self._count("queued")
        self._idle.clear()
        self._wake.set()

    def _tried_recently(self, url: str) -> bool:
        again_at = self._tried.get(url)
        if again_at is None:
            return False
        if again_at > self._monotonic():
            return True
        del self._tried[url]
        return False

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def idle(self) -> None:
        """Wait until every queued page has been fetched (or refused)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Fetch queued pages one at a time, forever (a background task of the server)."""
        async with aiohttp.ClientSession(auto_decompress=False, headers={
                "User-Agent": "adserve-discovery/1", "Accept": "text/html",
                "Accept-Encoding": "identity"}) as session:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    url, job = self._pending.popitem(last=False)
                    started = self._monotonic()
                    self._tried[url] = started + 60 * job.settings.retry_minutes  # from now: in flight too
                    while len(self._tried) > REMEMBERED_URLS:
                        self._tried.popitem(last=False)
                    await self._discover(session, job)
                    pause = 1 / job.settings.fetches_per_second - (self._monotonic() - started)
                    await asyncio.sleep(max(0.0, pause))
                self._idle.set()

    async def _discover(self, session: aiohttp.ClientSession, job: Job) -> None:
        if job.item_id in self.catalog.items:
            return  # the CMS was quicker
        try:
            async with asyncio.timeout(job.settings.timeout_seconds):
                url, page = await _fetch(session, job)
            self._add(job, url, page)
            self._count("discovered")
        except asyncio.CancelledError:
            raise
        except (Refused, CatalogError) as exc:
            self._count("refused")
            log.info("not discovered: %s (%s): %s", job.url, job.item_id, exc)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self._count("failed")
            log.info("not discovered: %s (%s): fetch failed: %r", job.url, job.item_id, exc)
        except Exception:  # a page must never stop discovery for the pages after it
            self._count("failed")
            log.exception("not discovered: %s (%s)", job.url, job.item_id)

    def _add(self, job: Job, url: str, page: "PageMetadata") -> None:
        if page.item_id is not None and page.item_id != job.item_id:
            raise Refused(f"the page says it is item '{page.item_id}'")
        canonical = on_site(urljoin(url, page.canonical), job.origins) if page.canonical else None
        url = canonical or url
        if self.catalog.has_url(url) or self.catalog.has_url(_site_path(url)):
            raise Refused("the page is already in the catalog under another id")
        if not page.title:
            raise Refused("no og:title or JSON-LD headline")
        image = on_site(urljoin(url, page.image), job.origins) if page.image else None
        item = item_from_dict({"item_id": job.item_id, "url": url, "title": page.title[:300],
                               "image_url": image, "section": (page.section or "").lower()[:64] or None,
                               "published": _unix(page.published)})
        if item.item_id in self.catalog.items:
            raise Refused("the CMS added the item meanwhile")
        self.catalog.upsert(item)
        log.info("discovered %s: %s", item.item_id, item.url)


async def _fetch(session: aiohttp.ClientSession, job: Job) -> tuple[str, "PageMetadata"]:
    """The final URL and the metadata of the page at ``job.url``, redirects kept on the site."""
    url = job.url
    for _ in range(MAX_REDIRECTS + 1):
        async with session.get(url, allow_redirects=False) as response:
            if response.status in REDIRECTS:
                target = on_site(urljoin(url, response.headers.get("Location", "")), job.origins)
                if target is None:
                    raise Refused("redirected off the site's origins")
                url = target
                continue
            if response.status != 200:
                raise Refused(f"answered {response.status}")
            if response.content_type != "text/html":
                raise Refused(f"not HTML ({response.content_type})")
            if response.headers.get("Content-Encoding", "identity") != "identity":
                raise Refused("compressed although identity was asked for")
            body = await _read_capped(response.content, job.settings.max_page_bytes)
            # parsing a long page takes CPU time (~1 s a MB): in a thread, so serving never stalls
            return url, await asyncio.to_thread(PageMetadata.of, _decode(body, response.charset))
    raise Refused("too many redirects")


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The first ``limit`` bytes; the rest is never read (the connection is then closed)."""
    chunks, size = [], 0
    async for chunk in stream.iter_chunked(65536):
        chunks.append(chunk[:limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def on_site(url: str, origins) -> str | None:
    """``url`` without its fragment if it is http(s) on one of ``origins``, else None.

    Every slot request for an unknown page asks this, and parsing costs ~14 µs: while the parser
    would take the text as it stands (it strips and removes control characters and spaces), a
    URL that starts with no origin (case-blind: the parser lowercases the scheme) is refused,
    and one that starts with a plain origin and then a path, query or fragment is cut by hand.
    """
    if _SPLIT_ALTERS.search(url):
        return _parsed_on_site(url, origins)
    for origin in origins:
        if url[:len(origin)].lower() == origin.lower():
            break
    else:
        return None
    if url.startswith(origin) and url[len(origin):len(origin) + 1] in ("", "/", "?", "#") and _plain(origin):
        head, _, query = url.partition("#")[0].partition("?")
        return f"{head}?{query}" if query else head  # an empty query goes, as the parser's does
    return _parsed_on_site(url, origins)


@functools.lru_cache(maxsize=64)
def _plain(origin: str) -> bool:
    """An origin the parser splits exactly where it ends: lowercase http(s), a bare ASCII host."""
    scheme, _, netloc = origin.partition("://")
    return (scheme in ("http", "https") and bool(netloc) and netloc.isascii()
            and not _SPLIT_ALTERS.search(netloc) and not any(c in netloc for c in "/?#[]"))


def _parsed_on_site(url: str, origins) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" not in origins:
        return None
    return parts._replace(fragment="").geturl()


def _site_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _unix(text: str | None) -> float | None:
    """An ISO 8601 time as Unix seconds (UTC if it names no zone); None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(text) if text else None
        unix = (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()
    except (ValueError, TypeError, AttributeError, OverflowError):
        return None
    return unix if 0 <= unix <= LATEST_PUBLISHED else None


class PageMetadata(HTMLParser):
    """What a page says about itself: Open Graph first, then a JSON-LD article."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self._link_canonical: str | None = None
        self.item_id: str | None = None  # from the loader's own page context, if the page has one
        self.article: dict = {}
        self.in_body = False
        self._script: tuple[str, list[str]] | None = None

    @classmethod
    def of(cls, text: str, chunk: int = 16384) -> "PageMetadata":
        """Parsed up to the body when Open Graph has named the title (the usual page: a head of a
        few KB), else through the whole text for a JSON-LD article."""
        page = cls()
        for start in range(0, len(text), chunk):
            page.feed(text[start:start + chunk])
            if page.in_body and "og:title" in page.og:
                break
        page.close()
        return page

    @property
    def canonical(self) -> str | None:
        return _text(self._link_canonical or self.og.get("og:url"))

    @property
    def title(self) -> str | None:
        return _text(self.og.get("og:title") or self.article.get("headline"))

    @property
    def image(self) -> str | None:
        image = self.og.get("og:image") or self.article.get("image")
        while isinstance(image, (list, dict)):  # JSON-LD: a URL, an ImageObject, or a list of them
            image = (image[0] if image else None) if isinstance(image, list) else image.get("url")
        return _text(image)

    @property
    def section(self) -> str | None:
        section = self.og.get("article:section") or self.article.get("articleSection")
        return _text(section[0] if isinstance(section, list) and section else section)

    @property
    def published(self) -> str | None:
        return _text(self.og.get("article:published_time") or self.article.get("datePublished"))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        self.in_body = self.in_body or tag == "body"
        if tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key in OPEN_GRAPH and a.get("content"):
                self.og.setdefault(key, a["content"])
        elif tag == "link" and "canonical" in a.get("rel", "").lower().split() and a.get("href"):
            self._link_canonical = self._link_canonical or a["href"]
        elif tag == "script":
            kind = ("ld" if a.get("type", "").lower() == "application/ld+json"
                    else "context" if a.get("id") == "adserve-page" else None)
            self._script = (kind, []) if kind else None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != "script" or self._script is None:
            return
        kind, parts = self._script
        self._script = None
        try:
            data = orjson.loads("".join(parts))
        except orjson.JSONDecodeError:
            return
        if kind == "context" and isinstance(data, dict) and isinstance(data.get("item_id"), (str, int)):
            self.item_id = self.item_id or str(data["item_id"])
        elif kind == "ld" and not self.article:
            self.article = _article(data) or {}


def _article(data: object) -> dict | None:
    """The first article object of a JSON-LD block (top level, a list, or a top-level ``@graph``)."""
    nodes = data if isinstance(data, list) else [data]
    nodes = [n for node in nodes if isinstance(node, dict)
             for n in [node, *(node.get("@graph") if isinstance(node.get("@graph"), list) else [])]]
    for node in nodes:
        types = node.get("@type") if isinstance(node, dict) else None
        if set(types if isinstance(types, list) else [types]) & ARTICLE_TYPES:
            return node
    return None


def _text(value: object) -> str | None:
    return (" ".join(value.split()) or None) if isinstance(value, str) else None
