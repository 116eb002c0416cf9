"""The slot request a page sends, parsed and checked before any decision is made.

Parsing is strict and total: anything the page sends that does not fit raises ``BadRequest`` with
a message that names the field, so the HTTP layer answers 400 and never 500.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import orjson

from .model import IAB_SIZES
from .privacy import UNSIGNALLED, Consent, Signals, consent

DEVICES = ("desktop", "mobile", "tablet", "app")
SLOT_TYPES = ("display", "recs")
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "_.:@/-")  # no spaces, quotes or CR/LF: ids go into URLs
_COUNTRIES = frozenset(a + b for a in string.ascii_uppercase for b in string.ascii_uppercase)  # ISO 3166-1 alpha-2's shape
MAX_KEYWORDS = 50
_ID_RULE = "expected an id of 1-128 letters, digits or _.:@/-"
MALFORMED_PRIVACY = Signals(gdpr_applies=True)  # a CMP answer that says nothing: no consent
NO_SIGNAL, GPC_ONLY = Signals(), Signals(gpc=True)  # the usual requests', made once
PAGE_TEXTS = ("url", "title", "section", "image_url", "published")  # optional strings of up to 2,048


class BadRequest(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Page:
    item_id: str | None = None
    url: str | None = None
    title: str | None = None
    section: str | None = None
    keywords: frozenset[str] | None = None  # None: unknown, so keyword rules fail closed
    image_url: str | None = None
    published: str | None = None


@dataclass(frozen=True, slots=True)
class Slot:  # frozen: one parse serves every view of a layout (``_Layouts``)
    id: str
    type: str
    placement: str | None = None
    sizes: tuple[str, ...] = ()
    count: int = 6


@dataclass(slots=True)
class SlotRequest:
    page: Page
    user_id: str | None
    device: str | None
    country: str | None
    slots: tuple[Slot, ...] = field(default=())
    consent: Consent = UNSIGNALLED  # what the reader allows; ``user_id`` is None without ``reader``


def parse_slot_request(body: object, placements: dict, max_slots: int, gpc_header: bool = False,
                       consent_required: bool = False) -> SlotRequest:
    """Turn the decoded JSON body into a ``SlotRequest``; ``placements`` fills slot defaults.

    ``gpc_header`` is the request's ``Sec-GPC: 1``; ``consent_required`` is the site's setting.
    Fields are checked in a fixed order (user, slots, device, country, user id, page), so a body
    with several faults always gets the same 400.
    """
    if not isinstance(body, dict):
        raise BadRequest("body", "expected a JSON object")
    user = body.get("user")
    if user is None:
        user = {}
    elif not isinstance(user, dict):
        raise BadRequest("body.user", "expected dict")
    slots = body.get("slots")
    if not isinstance(slots, list) or not slots:
        raise BadRequest("slots", "expected a non-empty list")
    if len(slots) > max_slots:
        raise BadRequest("slots", f"at most {max_slots} slots per request")
    parsed = _LAYOUTS.slots(slots, placements)
    device = body.get("device")
    if device is not None and device not in DEVICES:
        _optional(body, "device", str, "body")  # not a short string: that is the 400
        raise BadRequest("device", f"expected one of {', '.join(DEVICES)}")
    country = body.get("country")
    if country is not None and not (isinstance(country, str) and country in _COUNTRIES):
        _optional(body, "country", str, "body")
        raise BadRequest("country", "expected ISO alpha-2")
    allowed = consent(_signals(body.get("privacy"), gpc_header), consent_required)
    user_id = _id(user, "id", "user")
    return SlotRequest(_page(body.get("page") or {}), user_id if allowed.reader else None, device, country,
                       parsed, allowed)


class _Layouts:
    """The slots of the page layouts seen lately, parsed once each, for one table of placements.

    Every view of a layout sends the same slot list (the loader's ids, placements and sizes), and
    checking it always gives the same ``Slot`` tuple, so each is checked once and then looked up
    by its JSON text: for a decoded JSON body (lists, never tuples) equal text means equal values,
    types included (``true`` is not ``1``, ``6.0`` is not ``6``). Values that JSON text does not
    tell apart (subclasses) are checked every time. Layouts made up per request could fill it:
    past ``MAX_LAYOUTS`` it starts over; and a text longer than ``MAX_TEXT`` (slots padded with
    fields no slot reads: a real layout is a few hundred bytes) is not kept, so what is kept
    stays under ~0.5 MB whatever ``max_body_bytes`` allows.
    """

    MAX_LAYOUTS = 64
    MAX_TEXT = 8192

    def __init__(self) -> None:
        self.placements: dict | None = None
        self.known: dict[bytes, tuple[Slot, ...]] = {}
        self.shared: set[int] = set()  # the ids of ``known``'s tuples (which it holds: no id is reused)

    def slots(self, raw: list, placements: dict) -> tuple[Slot, ...]:
        if placements is not self.placements:  # a reload: new placements, new defaults
            self.placements, self.known, self.shared = placements, {}, set()
        try:
            text = orjson.dumps(raw, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
        except TypeError:
            return _slots(raw, placements)
        parsed = self.known.get(text)
        if parsed is None:
            parsed = _slots(raw, placements)
            if len(text) <= self.MAX_TEXT:
                if len(self.known) >= self.MAX_LAYOUTS:
                    self.known.clear()
                    self.shared.clear()
                self.known[text] = parsed
                self.shared.add(id(parsed))
        return parsed


_LAYOUTS = _Layouts()
MAX_SHARED = _Layouts.MAX_LAYOUTS  # layouts the parser shares at most at a time


def shared(slots: tuple[Slot, ...]) -> bool:
    """Whether ``slots`` is the parse every view of its layout gets now: only such a layout is
    worth keeping more of (a one-off, e.g. too long to keep, is new with each request)."""
    return id(slots) in _LAYOUTS.shared


def _slots(raw: list, placements: dict) -> tuple[Slot, ...]:
    parsed = tuple([_slot(s, i, placements) for i, s in enumerate(raw)])
    if len({s.id for s in parsed}) != len(parsed):
        raise BadRequest("slots", "slot ids must be unique")
    return parsed


def _signals(raw: object, gpc_header: bool) -> Signals:
    """The ``privacy`` object. A malformed one allows nothing but is never a 400: a CMP that
    answers oddly must not blank the page."""
    if raw is None:
        return GPC_ONLY if gpc_header else NO_SIGNAL
    if not isinstance(raw, dict):
        return MALFORMED_PRIVACY
    gdpr_applies, tc_string, gpc = raw.get("gdpr_applies"), raw.get("tc_string"), raw.get("gpc")
    if (not isinstance(gdpr_applies, bool | None) or not isinstance(tc_string, str | None)
            or not isinstance(gpc, bool | None)):
        return MALFORMED_PRIVACY
    return Signals(gdpr_applies, tc_string, bool(gpc) or gpc_header)


def _page(raw: object) -> Page:
    if not isinstance(raw, dict):
        raise BadRequest("page", "expected an object")
    keywords = raw.get("keywords")
    if keywords is not None:
        keywords = _keywords(keywords)
    url, title, section, image_url, published = texts = tuple(map(raw.get, PAGE_TEXTS))
    for value in texts:  # checked in one pass; a value that is not a short string is looked at again
        if value is not None and (type(value) is not str or len(value) > 2048):
            for name in PAGE_TEXTS:
                _optional(raw, name, str, "page", limit=2048)
    return Page(_id(raw, "item_id", "page"), url, title, section.lower() if section else None, keywords,
                image_url, published)


def _keywords(raw: object) -> frozenset[str]:
    """The page's keywords, lowercased: a list of up to ``MAX_KEYWORDS`` strings of up to 64."""
    if not isinstance(raw, list):
        raise BadRequest("page.keywords", "expected list")
    try:
        if len(raw) <= MAX_KEYWORDS and (not raw or max(map(len, raw)) <= 64):
            return frozenset(map(str.lower, raw))  # a TypeError unless every one is a string
    except TypeError:
        pass
    raise BadRequest("page.keywords", f"expected at most {MAX_KEYWORDS} strings of up to 64 characters")


def _slot(raw: object, index: int, placements: dict) -> Slot:
    where = f"slots[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(where, "expected an object")
    slot_id = _id(raw, "id", where)
    if slot_id is None:
        raise BadRequest(f"{where}.id", "required")
    name = _optional(raw, "placement", str, where)
    placement = placements.get(name) if name else None
    if name is not None and placement is None:
        raise BadRequest(f"{where}.placement", f"unknown placement '{name}'")
    kind = _optional(raw, "type", str, where) or (placement.type if placement else None)
    if kind not in SLOT_TYPES:
        raise BadRequest(f"{where}.type", f"expected one of {', '.join(SLOT_TYPES)}")
    if placement is not None and placement.type != kind:
        raise BadRequest(f"{where}.type", f"placement '{name}' is a {placement.type} slot")
    sizes = _optional(raw, "sizes", list, where)
    if sizes is None:
        sizes = placement.sizes if placement else []
    if not all(isinstance(s, str) and s in IAB_SIZES and s != "native" for s in sizes):
        raise BadRequest(f"{where}.sizes", "unknown size (expected IAB sizes like 300x250)")
    if kind == "display" and not sizes:
        raise BadRequest(f"{where}.sizes", "a display slot needs sizes or a placement")
    count = _optional(raw, "count", int, where)
    count = count if count is not None else (placement.count if placement else 6)
    if not 1 <= count <= 24:
        raise BadRequest(f"{where}.count", "expected 1..24")
    # each size once, in the page's order: repeats add nothing, and every kept context holds them
    return Slot(id=slot_id, type=kind, placement=name, sizes=tuple(dict.fromkeys(sizes)), count=count)


def _optional(raw: dict, key: str, kind: type, where: str, limit: int = 256):
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is kind and (kind is not str or len(value) <= limit):
        return value  # the usual case, settled in one test
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{where}.{key}", f"expected {kind.__name__}")
    if isinstance(value, str) and len(value) > limit:
        raise BadRequest(f"{where}.{key}", "too long")
    return value


def _id(raw: dict, key: str, where: str) -> str | None:
    """An id of 1-128 of ``_ID_CHARS`` (a number becomes its text); None when absent."""
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise BadRequest(f"{where}.{key}", _ID_RULE)
    if not (0 < len(value) <= 128 and _ID_CHARS.issuperset(value)):
        raise BadRequest(f"{where}.{key}", _ID_RULE)
    return value
