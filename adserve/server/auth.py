"""Bearer tokens of the operator's endpoints (CMS upserts, config status details).

The header is attacker-controlled: it is compared in constant time, and any shape of it (no
scheme, another scheme, bytes that are not UTF-8) is simply a token that does not match.
"""

from __future__ import annotations

import hmac

from aiohttp import web


def bearer_matches(request: web.Request, token: str) -> bool:
    """True when ``request`` carries ``Authorization: Bearer <token>``.

    aiohttp hands header bytes that are not UTF-8 over as surrogate escapes; encoding them back
    the same way compares the bytes that were sent instead of raising (which answered 500).
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode())
