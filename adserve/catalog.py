"""The site's articles: what recommendation widgets may show.

Items come from the shipped catalog file, from the CMS through the authenticated upsert endpoint,
and from discovery (``catalog_discovery``), which reads the site's own pages. A slot request never
writes here: what it says about its page is the reader's word, not the site's. Only known, live
items are ever recommended. Upserts are appended to a journal beside the event log, so they survive
a restart, and handed to ``on_change``, which shares them with the other workers and replicas.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import orjson

ITEM_ID = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")  # patterns are used with fullmatch: "$" passes "\n"
URL = re.compile(r"(https?://|/)[^\x00-\x20\x7f]*")  # an http(s) URL or a site path, no whitespace
LATEST_PUBLISHED = 253402300799.0  # 9999-12-31 23:59:59 UTC, the last moment a page can print
_TEXT_FIELDS = ("url", "title", "image_url", "section")
CARDS_KEPT = 20_000  # widget cards remembered; past that the memo starts afresh
CARD_BASE_KEPT = 256  # a longer base URL (a client's Host header) gets cards made, not kept


@dataclass(slots=True)
class Item:
    item_id: str
    url: str
    title: str
    image_url: str | None = None
    section: str | None = None
    published: float | None = None  # Unix seconds
    live: bool = True


class CatalogError(ValueError):
    pass


def absolute(url: str | None, base_url: str) -> str | None:
    """Site-relative URLs (``/articles/...``) resolved against the server's public URL."""
    return f"{base_url}{url}" if url and url.startswith("/") else url


def item_from_dict(raw: object) -> Item:
    """Validate one item as sent by the CMS or read from a catalog file."""
    if not isinstance(raw, dict):
        raise CatalogError("an item must be a JSON object")
    item_id = raw.get("item_id")
    if not isinstance(item_id, str) or not ITEM_ID.fullmatch(item_id):
        raise CatalogError("item_id: expected 1-128 letters, digits or _.:@/-")
    for name in _TEXT_FIELDS:
        value = raw.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 2048):
            raise CatalogError(f"{name}: expected a string of at most 2048 characters")
    for name in ("url", "image_url"):
        if raw.get(name) is not None and not URL.fullmatch(raw[name]):
            raise CatalogError(f"{name}: expected an http(s) URL or a site path, without whitespace")
    if not raw.get("url"):
        raise CatalogError("url: required")
    if not raw.get("title"):
        raise CatalogError("title: required")
    published = raw.get("published")
    if published is not None and (isinstance(published, bool) or not isinstance(published, (int, float))
                                  or not 0 <= published <= LATEST_PUBLISHED):  # NaN fails too
        raise CatalogError("published: expected Unix seconds between 1970 and 9999")
    live = raw.get("live", True)
    if not isinstance(live, bool):
        raise CatalogError("live: expected true or false")
    return Item(item_id=item_id, url=raw["url"], title=raw["title"], image_url=raw.get("image_url"),
                section=raw.get("section"), published=published, live=live)


class Catalog:
    """Items by id, and by publish time.

    Widgets keep asking for the fresh and the newest articles; answering from a sorted index
    takes microseconds, where a pass over 100,000 archived articles stalled the event loop for
    ~10 ms.
    """

    def __init__(self, items: dict[str, Item] | None = None, journal: Path | None = None) -> None:
        self.items: dict[str, Item] = items or {}  # read freely; change through upsert (it keeps the index)
        self._journal = journal
        self._by_time = sorted((i.published, i.item_id) for i in self.items.values() if i.published is not None)
        self._urls = {i.url for i in self.items.values()}  # one item per page: discovery checks here
        self.on_change: Callable[[Item], None] = lambda item: None  # told of each change made here
        self.version = 0  # moves on each upsert: what was worked out from the items before is stale
        self._cards: dict[str, tuple[Item, str, dict]] = {}  # item id -> (item, base URL, widget entry)

    @classmethod
    def load(cls, path: str | Path, journal: str | Path | None = None) -> "Catalog":
        journal = Path(journal) if journal else None
        items: dict[str, Item] = {}
        for source in (Path(path), journal):
            if source is not None and source.is_file():
                for line in source.read_bytes().splitlines():
                    try:
                        item = item_from_dict(orjson.loads(line))
                    except (orjson.JSONDecodeError, CatalogError):
                        continue  # a torn journal line loses one upsert, not the catalog
                    items[item.item_id] = item
        return cls(items, journal)

    def upsert(self, item: Item, persist: bool = True) -> None:
        """Journal the item, then apply it: an upsert that cannot be persisted (OSError) is not applied.

        ``persist=False``: a change made elsewhere (another worker's, read from the shared feed)
        or rebuilt; it is neither journaled here nor passed on again.
        """
        if persist and self._journal is not None:
            self._journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self._journal, "ab") as f:
                f.write(orjson.dumps(asdict(item)) + b"\n")
        old = self.items.get(item.item_id)
        if old is not None and old.published is not None:
            del self._by_time[bisect.bisect_left(self._by_time, (old.published, old.item_id))]
        if item.published is not None:
            bisect.insort(self._by_time, (item.published, item.item_id))
        self.items[item.item_id] = item
        self._urls.add(item.url)
        self.version += 1
        if persist:
            self.on_change(item)

    def has_url(self, url: str) -> bool:
        """Whether an item stands (or stood) for the page at ``url``, as stored: absolute or a path."""
        return url in self._urls

    def live(self, item_id: str) -> Item | None:
        item = self.items.get(item_id)
        return item if item is not None and item.live else None

    def cards(self, item_ids: list[str], base_url: str) -> list[dict]:
        """The widget entries of ``item_ids``: id, title, URLs made absolute, section, not
        sponsored (a catalog article never is); the kept dicts themselves, read-only (a widget
        merges each into its own entry with its click URL, one dict made in C).

        Remade for every article of every widget, each cost two new URL strings and a 6-key dict;
        it is kept per item object and base URL. An upsert stores a
        new item object, so the next widget shows the article as it now is; another base URL (the
        Host header's, without ``public_url``) replaces the entry rather than adding one.
        """
        items, kept = self.items, self._cards
        cards = []
        for item_id in item_ids:
            item = items[item_id]
            card = kept.get(item_id)
            if card is None or card[0] is not item or card[1] != base_url:
                card = self._card(item, base_url)
            cards.append(card[2])
        return cards

    def _card(self, item: Item, base_url: str) -> tuple[Item, str, dict]:
        entry = {"item_id": item.item_id, "title": item.title, "url": absolute(item.url, base_url),
                 "image_url": absolute(item.image_url, base_url), "section": item.section, "sponsored": False}
        card = (item, base_url, entry)
        if len(base_url) <= CARD_BASE_KEPT:  # else ~8 kB a URL, two per item, pinned by any client
            if len(self._cards) >= CARDS_KEPT:
                self._cards.clear()
            self._cards[item.item_id] = card
        return card

    def published_since(self, cutoff: float) -> list[str]:
        """Live items published at or after ``cutoff`` (Unix seconds), oldest first."""
        start = bisect.bisect_left(self._by_time, (cutoff,))
        return [item_id for _, item_id in self._by_time[start:] if self.items[item_id].live]

    def newest(self, n: int) -> list[str]:
        """The ``n`` most recently published live items, newest first."""
        found: list[str] = []
        for _, item_id in reversed(self._by_time):
            if len(found) == n:
                break
            if self.items[item_id].live:
                found.append(item_id)
        return found

    def write(self, path: str | Path) -> None:
        Path(path).write_bytes(b"".join(orjson.dumps(asdict(i)) + b"\n" for i in self.items.values()))
