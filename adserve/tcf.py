"""Purpose consents out of an IAB TCF v2.2 TC string, decoded here rather than trusted from the page.

adserve is the publisher's own server, so it reads the publisher TC segment's purpose consents
when the string carries one (that is where a CMP records what the reader allowed the publisher
itself) and the core segment's otherwise. Only the fields consent depends on are read; anything
that does not decode as a version 2 string raises ``TCStringError``, which callers treat as no
consent (fail closed), never as a bad request.

Layout (IAB "TCF v2.2: Consent string and vendor list formats"): segments are base64url without
padding, joined by ``.``; the core segment comes first and starts with a 6-bit version; every
other segment starts with a 3-bit segment type (3 = publisher TC).
"""

from __future__ import annotations

import binascii
import functools
import re

PURPOSES = 24  # width of the purpose bitfields; TCF v2.2 defines purposes 1-11
_VERSION_BITS = 6
_CORE_PURPOSES_AT = 152  # version 6, created 36, updated 36, CMP id 12 and version 12, screen 6,
#                          language 12, vendor list version 12, policy 6, two flags, special features 12
_CORE_MIN_BITS = 213     # ... purpose consents 24, legitimate interests 24, purpose one 1, country 12
_SEGMENT_TYPE_BITS = 3
_PUBLISHER_TC = 3
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
MAX_CHARS = 8192  # a real string with thousands of vendors as a bitfield stays under this


class TCStringError(ValueError):
    """The string is not a TCF v2 TC string."""


@functools.lru_cache(maxsize=4096)  # a reader sends the same string on every page view
def purpose_consents(tc_string: str) -> frozenset[int]:
    """The purposes (1-24) the reader consented to, publisher segment first."""
    if len(tc_string) > MAX_CHARS:
        raise TCStringError("too long")
    segments = [_bits(segment) for segment in tc_string.split(".")]
    core = segments[0]
    if len(core) < _CORE_MIN_BITS or int(core[:_VERSION_BITS], 2) != 2:
        raise TCStringError("not a version 2 core segment")
    chosen = core[_CORE_PURPOSES_AT:_CORE_PURPOSES_AT + PURPOSES]
    for segment in segments[1:]:
        if len(segment) < _SEGMENT_TYPE_BITS:
            raise TCStringError("empty segment")
        if int(segment[:_SEGMENT_TYPE_BITS], 2) == _PUBLISHER_TC:
            chosen = segment[_SEGMENT_TYPE_BITS:_SEGMENT_TYPE_BITS + PURPOSES]
            if len(chosen) < PURPOSES:
                raise TCStringError("short publisher segment")
    return frozenset(n for n, bit in enumerate(chosen, 1) if bit == "1")


def _bits(segment: str) -> str:
    """A base64url segment as a string of '0'/'1', most significant bit first."""
    if not _BASE64URL.fullmatch(segment):
        raise TCStringError("not base64url")
    try:
        data = binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise TCStringError("not base64url") from exc
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b") if data else ""
