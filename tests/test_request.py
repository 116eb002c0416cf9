"""Slot request parsing: what a page's body becomes, and the exact 400 each bad field gets.

The refusal's field and message are what the page's developer reads in the 400 (``detail`` is
``"<field>: <message>"``), so they are asserted whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adserve.model import Placement
from adserve.privacy import EVERYTHING, NOTHING, UNSIGNALLED, Consent
from adserve.request import BadRequest, Page, Slot, parse_slot_request

PLACEMENTS = {
    "top": Placement(id="top", type="display", sizes=["728x90", "970x250"]),
    "more": Placement(id="more", type="recs", count=4),
}
TCF = json.loads((Path(__file__).parent / "fixtures" / "tcf" / "strings.json").read_text())
DISPLAY = {"id": "s1", "type": "display", "sizes": ["300x250"]}


def parse(body: dict, max_slots: int = 4, **kwargs):
    return parse_slot_request({"slots": [DISPLAY], **body}, PLACEMENTS, max_slots, **kwargs)


def refusal(body: object, max_slots: int = 4) -> tuple[str, str]:
    with pytest.raises(BadRequest) as caught:
        parse_slot_request(body, PLACEMENTS, max_slots)
    assert str(caught.value) == f"{caught.value.field}: {caught.value.message}"
    return caught.value.field, caught.value.message


def test_a_full_request_parses_into_its_fields():
    body = {"user": {"id": "reader-1"}, "device": "mobile", "country": "DE",
            "page": {"item_id": 1234, "url": "https://news.example/a/1", "title": "A title",
                     "section": "World", "keywords": ["Climate", "EU", "climate"],
                     "image_url": "https://news.example/a.jpg", "published": "2026-11-30"},
            "slots": [{"id": "s1", "placement": "top"}, {"id": "s2", "placement": "more"},
                      {"id": "s3", "type": "recs"}, {"id": "s4", "type": "display", "sizes": ["300x250"],
                                                     "count": 1}]}
    request = parse_slot_request(body, PLACEMENTS, 4)
    assert request.page == Page(item_id="1234", url="https://news.example/a/1", title="A title",
                                section="world", keywords=frozenset({"climate", "eu"}),
                                image_url="https://news.example/a.jpg", published="2026-11-30")
    assert (request.user_id, request.device, request.country) == ("reader-1", "mobile", "DE")
    assert request.slots == (Slot("s1", "display", "top", ("728x90", "970x250"), 6),
                             Slot("s2", "recs", "more", (), 4),
                             Slot("s3", "recs", None, (), 6),
                             Slot("s4", "display", None, ("300x250",), 1))
    assert request.consent == UNSIGNALLED


def test_what_a_page_may_leave_out():
    request = parse_slot_request({"slots": [{"id": "s1", "type": "recs"}]}, PLACEMENTS, 1)
    assert request.page == Page()  # keywords None: unknown, so keyword rules fail closed
    assert (request.user_id, request.device, request.country) == (None, None, None)
    assert parse({"user": None, "page": None, "device": None, "country": None}).page == Page()
    assert parse({"page": {"section": "", "keywords": []}}).page == Page(keywords=frozenset())


def test_limits_are_inclusive():
    assert len(parse({"slots": [{**DISPLAY, "id": f"s{i}"} for i in range(4)]}).slots) == 4
    page = parse({"page": {"keywords": ["k" * 64] * 50, "title": "t" * 2048, "item_id": "i" * 128}}).page
    assert (page.keywords, len(page.title), page.item_id) == (frozenset({"k" * 64}), 2048, "i" * 128)
    assert [s.count for s in parse({"slots": [{**DISPLAY, "count": 1}, {**DISPLAY, "id": "s2", "count": 24}]}).slots] == [1, 24]
    assert refusal({"slots": [{**DISPLAY, "placement": "p" * 256}]}) == (
        "slots[0].placement", f"unknown placement '{'p' * 256}'")


LONG = "x" * 257
BAD = [
    ([], ("body", "expected a JSON object")),
    ({"slots": [DISPLAY], "user": "reader-1"}, ("body.user", "expected dict")),
    ({}, ("slots", "expected a non-empty list")),
    ({"slots": []}, ("slots", "expected a non-empty list")),
    ({"slots": {"id": "s1"}}, ("slots", "expected a non-empty list")),
    ({"slots": [{**DISPLAY, "id": f"s{i}"} for i in range(5)]}, ("slots", "at most 4 slots per request")),
    ({"slots": [DISPLAY, DISPLAY]}, ("slots", "slot ids must be unique")),
    ({"slots": [DISPLAY], "device": "phone"}, ("device", "expected one of desktop, mobile, tablet, app")),
    ({"slots": [DISPLAY], "device": 1}, ("body.device", "expected str")),
    ({"slots": [DISPLAY], "device": LONG}, ("body.device", "too long")),
    ({"slots": [DISPLAY], "country": "de"}, ("country", "expected ISO alpha-2")),
    ({"slots": [DISPLAY], "country": "DEU"}, ("country", "expected ISO alpha-2")),
    ({"slots": [DISPLAY], "country": 49}, ("body.country", "expected str")),
    ({"slots": [DISPLAY], "user": {"id": "a b"}},
     ("user.id", "expected an id of 1-128 letters, digits or _.:@/-")),
    ({"slots": [DISPLAY], "user": {"id": True}},
     ("user.id", "expected an id of 1-128 letters, digits or _.:@/-")),
    ({"slots": [DISPLAY], "user": {"id": ""}},
     ("user.id", "expected an id of 1-128 letters, digits or _.:@/-")),
    ({"slots": [DISPLAY], "page": "front"}, ("page", "expected an object")),
    ({"slots": [DISPLAY], "page": {"item_id": "i" * 129}},
     ("page.item_id", "expected an id of 1-128 letters, digits or _.:@/-")),
    ({"slots": [DISPLAY], "page": {"keywords": "news"}}, ("page.keywords", "expected list")),
    ({"slots": [DISPLAY], "page": {"keywords": ["k"] * 51}},
     ("page.keywords", "expected at most 50 strings of up to 64 characters")),
    ({"slots": [DISPLAY], "page": {"keywords": ["k" * 65]}},
     ("page.keywords", "expected at most 50 strings of up to 64 characters")),
    ({"slots": [DISPLAY], "page": {"keywords": ["news", 5]}},
     ("page.keywords", "expected at most 50 strings of up to 64 characters")),
    ({"slots": [DISPLAY], "page": {"title": "t" * 2049}}, ("page.title", "too long")),
    ({"slots": [DISPLAY], "page": {"url": 5}}, ("page.url", "expected str")),
    ({"slots": [DISPLAY], "page": {"section": ["world"]}}, ("page.section", "expected str")),
    ({"slots": [DISPLAY], "page": {"image_url": 5}}, ("page.image_url", "expected str")),
    ({"slots": [DISPLAY], "page": {"published": 5}}, ("page.published", "expected str")),
    ({"slots": [DISPLAY, "s2"]}, ("slots[1]", "expected an object")),
    ({"slots": [{"type": "recs"}]}, ("slots[0].id", "required")),
    ({"slots": [{"id": "s 1", "type": "recs"}]},
     ("slots[0].id", "expected an id of 1-128 letters, digits or _.:@/-")),
    ({"slots": [{"id": "s1", "placement": "nope"}]}, ("slots[0].placement", "unknown placement 'nope'")),
    ({"slots": [{"id": "s1", "placement": 3}]}, ("slots[0].placement", "expected str")),
    ({"slots": [{"id": "s1"}]}, ("slots[0].type", "expected one of display, recs")),
    ({"slots": [{"id": "s1", "type": "video"}]}, ("slots[0].type", "expected one of display, recs")),
    ({"slots": [{"id": "s1", "type": 1}]}, ("slots[0].type", "expected str")),
    ({"slots": [{"id": "s1", "type": "recs", "placement": "top"}]},
     ("slots[0].type", "placement 'top' is a display slot")),
    ({"slots": [{"id": "s1", "type": "display", "sizes": "300x250"}]}, ("slots[0].sizes", "expected list")),
    ({"slots": [{"id": "s1", "type": "display", "sizes": ["300x251"]}]},
     ("slots[0].sizes", "unknown size (expected IAB sizes like 300x250)")),
    ({"slots": [{"id": "s1", "type": "recs", "sizes": ["native"]}]},
     ("slots[0].sizes", "unknown size (expected IAB sizes like 300x250)")),
    ({"slots": [{"id": "s1", "type": "display", "sizes": [300]}]},
     ("slots[0].sizes", "unknown size (expected IAB sizes like 300x250)")),
    ({"slots": [{"id": "s1", "type": "display"}]}, ("slots[0].sizes", "a display slot needs sizes or a placement")),
    ({"slots": [{"id": "s1", "type": "display", "sizes": []}]},
     ("slots[0].sizes", "a display slot needs sizes or a placement")),
    ({"slots": [{**DISPLAY, "count": 0}]}, ("slots[0].count", "expected 1..24")),
    ({"slots": [{**DISPLAY, "count": 25}]}, ("slots[0].count", "expected 1..24")),
    ({"slots": [{**DISPLAY, "count": True}]}, ("slots[0].count", "expected int")),
    ({"slots": [{**DISPLAY, "count": 6.0}]}, ("slots[0].count", "expected int")),
]


@pytest.mark.parametrize("body, expected", BAD, ids=[f"{e[0]}-{e[1][:20]}" for _, e in BAD])
def test_bad_fields_are_refused_with_their_name_and_why(body, expected):
    assert refusal(body) == expected


def test_numeric_ids_are_ids_and_a_placement_supplies_slot_defaults():
    request = parse({"user": {"id": 42}, "page": {"item_id": 7},
                     "slots": [{"id": 3, "placement": "top", "type": "display", "sizes": ["300x250"]},
                               {"id": "s4", "placement": "more", "count": 9}]})
    assert (request.user_id, request.page.item_id) == ("42", "7")
    assert request.slots == (Slot("3", "display", "top", ("300x250",), 6), Slot("s4", "recs", "more", (), 9))


def tcf(case: str, **more) -> dict:
    return {"gdpr_applies": True, "tc_string": TCF[case]["tc_string"], **more}


@pytest.mark.parametrize("privacy, gpc_header, required, consent", [
    (None, False, False, UNSIGNALLED),       # no signal: served as before consent existed
    (None, False, True, NOTHING),            # ... unless the site requires consent
    (None, True, False, NOTHING),            # Sec-GPC: 1
    ({}, False, False, UNSIGNALLED),
    ({}, True, False, NOTHING),
    ({"gpc": True}, False, False, NOTHING),
    ({"gpc": False}, False, False, UNSIGNALLED),
    ({"gpc": None}, True, False, NOTHING),
    ({"gdpr_applies": False}, False, True, EVERYTHING),
    (tcf("all-purposes"), False, False, EVERYTHING),
    (tcf("all-purposes", gpc=True), False, False, NOTHING),
    (tcf("all-purposes"), True, False, NOTHING),
    (tcf("storage-only"), False, False, Consent(reader=True, ads=False, content=False, signalled=True)),
    (tcf("no-consent"), False, False, NOTHING),
    # a CMP answer of the wrong shape allows nothing, and is never a 400
    ("yes", False, False, NOTHING), ([], False, False, NOTHING),
    ({"gdpr_applies": "false"}, False, False, NOTHING), ({"gdpr_applies": 0}, False, False, NOTHING),
    ({"tc_string": 5}, False, False, NOTHING), ({"gpc": "0"}, False, False, NOTHING),
    ({"gpc": 0}, False, False, NOTHING),
])
def test_privacy_signals_decide_what_the_request_allows(privacy, gpc_header, required, consent):
    body = {"user": {"id": "reader-1"}} | ({} if privacy is None else {"privacy": privacy})
    request = parse(body, gpc_header=gpc_header, consent_required=required)
    assert request.consent == consent
    assert request.user_id == ("reader-1" if consent.reader else None)  # no storage: anonymous


def test_a_layout_seen_before_is_checked_against_the_current_placements_and_its_exact_values():
    """Slot lists are parsed once per layout (``_Layouts``); a repeat must still answer as a first
    parse would: new placements (a reload) give new defaults, and values equal in Python but not
    in JSON (``true`` and ``1``, ``6.0`` and ``6``) are not the same slot."""
    layout = [{"id": "s1", "placement": "more"}, {"id": "s2", "type": "display", "sizes": ["300x250"], "count": 1}]
    first = parse_slot_request({"slots": layout}, PLACEMENTS, 4)
    assert parse_slot_request({"slots": layout}, PLACEMENTS, 4) == first
    assert first.slots[0].count == 4
    for count in (True, 1.0):
        assert refusal({"slots": [layout[0], {**layout[1], "count": count}]}) == ("slots[1].count", "expected int")
    assert refusal({"slots": layout + [{"id": "s1", "type": "recs"}]}) == ("slots", "slot ids must be unique")
    reloaded = {**PLACEMENTS, "more": Placement(id="more", type="recs", count=9)}
    assert parse_slot_request({"slots": layout}, reloaded, 4).slots[0].count == 9


def test_slot_lists_padded_with_fields_no_slot_reads_are_not_kept():
    """Parsed layouts are kept by their JSON text, a few dozen at a time; slots may carry fields
    the server ignores, so a sender padding them must not make each kept text as big as a whole
    body (64 of them pinned in memory): what is kept stays small, and still answers right."""
    from adserve import request

    for n in range(request._Layouts.MAX_LAYOUTS):
        padded = [{**DISPLAY, "padding": f"{n}" + "x" * 60_000}]
        assert parse_slot_request({"slots": padded}, PLACEMENTS, 4).slots == (Slot("s1", "display", None, ("300x250",), 6),)
    assert sum(map(len, request._LAYOUTS.known)) < 1_000_000  # not 64 x 60 kB


def test_a_slot_names_each_of_its_sizes_once():
    """Sizes are a set the page lists in its order of preference: a size sent again adds nothing.
    A body's worth of repeats (thousands) must not make a slot as big, as every page context the
    decider keeps (thousands) holds its slot's sizes."""
    repeated = {"id": "s1", "type": "display", "sizes": ["300x250", "728x90", "300x250"] * 2000}
    assert parse({"slots": [repeated]}).slots[0].sizes == ("300x250", "728x90")
