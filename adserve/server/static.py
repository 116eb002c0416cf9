"""The loader and the package's static files, with caching headers and gzip.

Every page view fetches the loader, so it must be cheap to fetch again: ``/static/adserve.js``
may be cached for a few minutes and revalidated with its ETag (config changes reach pages within
that time), and ``/static/adserve.<version>.js`` forever, because its name changes with its
content. The served loader carries the placements map (type, sizes, item count, collapse), so it
can reserve each slot's space before the slot request returns.

Files are read once at startup: the names that can be served are exactly the files that exist,
so no request path can reach outside the folder. Text files are sent gzipped to clients that
accept it (``Vary: Accept-Encoding`` keeps shared caches from mixing the two).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from ..model import Placement
from ..render import BASE_CSS

STATIC = Path(__file__).resolve().parent.parent / "static"
LOADER = "adserve.js"
PLACEMENTS_MARK = "/* placements */ {}"  # replaced in the served loader by the placements map
BASE_CSS_MARK = '/* base css */ ""'      # ... and by the tiles' base stylesheet
LOADER_MAX_AGE = 300      # seconds a page may use the unversioned loader without asking again
ASSET_MAX_AGE = 86400     # creatives and thumbnails of the package
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class Asset:
    """One servable file: its bytes, their gzip and the validator for both."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    version: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> "Asset":
        packed = gzip.compress(body, 9, mtime=0) if content_type.startswith(COMPRESSIBLE) else None
        version = hashlib.blake2b(body, digest_size=8).hexdigest()
        return cls(body, packed if packed and len(packed) < len(body) else None, content_type, version)

    def response(self, request: web.Request, cache_control: str) -> web.Response:
        # weak: the gzipped and the plain bytes are the same content
        headers = {"Cache-Control": cache_control, "ETag": f'W/"{self.version}"',
                   "X-Content-Type-Options": "nosniff"}
        if self.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if _matches(request.headers.get("If-None-Match", ""), self.version):
            return web.Response(status=304, headers=headers)
        body = self.body
        if self.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body, headers["Content-Encoding"] = self.gzipped, "gzip"
        return web.Response(body=body, headers={**headers, "Content-Type": self.content_type})


def _matches(if_none_match: str, version: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return f'"{version}"' in tags or "*" in tags


def accepts_gzip(accept_encoding: str) -> bool:
    """RFC 9110: ``gzip`` (or else ``*``) listed with a weight above 0."""
    weights = {}
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        params = params.strip()
        try:
            weights[coding.strip()] = float(params[2:]) if params.startswith("q=") else 1.0
        except ValueError:
            weights[coding.strip()] = 0.0
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def placements_map(placements: Mapping[str, Placement]) -> dict:
    """What the loader needs to reserve a slot's space: nothing else of the config leaves."""
    return {p.id: {"type": p.type, "sizes": p.sizes, "count": p.count, "collapse": p.collapse}
            for p in placements.values()}


class Loader:
    """The loader script with the current placements map, rebuilt when a reload swaps them."""

    def __init__(self, placements: Callable[[], Mapping[str, Placement]]) -> None:
        self.placements = placements
        self.template = (STATIC / LOADER).read_text(encoding="utf-8")
        for mark in (PLACEMENTS_MARK, BASE_CSS_MARK):
            if mark not in self.template:
                raise RuntimeError(f"{LOADER} lacks the mark {mark!r}")
        self.template = self.template.replace(BASE_CSS_MARK, orjson.dumps(BASE_CSS).decode())
        self._built: tuple[object, Asset] | None = None

    def asset(self) -> Asset:
        current = self.placements()
        if self._built is None or self._built[0] is not current:
            text = self.template.replace(PLACEMENTS_MARK, orjson.dumps(placements_map(current)).decode())
            self._built = (current, Asset.of(text.encode(), "application/javascript; charset=utf-8"))
        return self._built[1]

    def url(self) -> str:
        """The versioned path pages should use: cached for a year, renamed by any change."""
        return f"/static/adserve.{self.asset().version}.js"

    async def latest(self, request: web.Request) -> web.Response:
        return self.asset().response(request, f"public, max-age={LOADER_MAX_AGE}")

    async def versioned(self, request: web.Request) -> web.Response:
        asset = self.asset()
        # a page still naming an older version gets today's loader, but only briefly cached
        fresh = request.match_info["version"] == asset.version
        return asset.response(request, IMMUTABLE if fresh else f"public, max-age={LOADER_MAX_AGE}")


def read_assets(folder: Path) -> dict[str, Asset]:
    assets = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != LOADER and not path.name.startswith("."):
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            kind += "; charset=utf-8" if kind.startswith("text/") else ""
            assets[path.relative_to(folder).as_posix()] = Asset.of(path.read_bytes(), kind)
    return assets


def routes(loader: Loader) -> list[web.RouteDef]:
    assets = read_assets(STATIC)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        return found.response(request, f"public, max-age={ASSET_MAX_AGE}")

    return [web.get("/static/adserve.js", loader.latest),
            web.get("/static/adserve.{version:[0-9a-f]{16}}.js", loader.versioned),
            web.get("/static/{path:.+}", asset)]
