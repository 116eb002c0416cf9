"""Signed, expiring tracking tokens.

A token is ``base64url(json payload) + "." + base64url(MAC)``: URL-safe as it stands. The MAC is
keyed BLAKE2b (RFC 7693's keyed mode is a MAC by design), twice as fast as HMAC-SHA256 here,
and every page answer signs a handful of tokens. The click endpoint only redirects to the
landing URL inside a token it signed, so adserve cannot be used as an open redirect, and an
altered campaign id, price-bearing field or URL breaks the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import secrets
import time
from pathlib import Path
from typing import NamedTuple

import orjson

SIGNATURE_BYTES = 16
MAX_TOKEN_CHARS = 4096
MIN_SECRET_BYTES = 32  # a MAC key guessable by brute force signs anything


class TokenError(ValueError):
    """The token is malformed, forged, altered or expired; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> bytes:
    """base64url without padding (binascii directly: this runs twice per token)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    # pragma: no mutate below: the decoder ignores excess "=", so "+len % 4" is equivalent
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))  # pragma: no mutate


class Head(NamedTuple):
    """The fields many tokens open with, serialised, encoded and absorbed by the MAC once."""
    body: bytes  # base64url of their JSON up to its last comma and whole base64 groups of spaces
    mac: object  # the keyed BLAKE2b having absorbed ``body`` (copied per token)


class Signer:
    def __init__(self, secret: bytes, ttl_seconds: int, clock=time.time) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes")
        key = hashlib.blake2b(secret, digest_size=64).digest()  # pragma: no mutate (64 is the default)
        self._keyed = hashlib.blake2b(key=key, digest_size=SIGNATURE_BYTES)  # copied per MAC
        self.ttl = ttl_seconds
        self._clock = clock
        self._nonce_prefix = secrets.token_hex(6)  # pragma: no mutate (any size keeps nonces unique)
        self._counter = itertools.count()

    def _mac(self, body: bytes, absorbed=None) -> bytes:
        """The MAC of ``body``, after what ``absorbed`` (the key block by default; a head) holds."""
        mac = (absorbed or self._keyed).copy()
        mac.update(body)
        return _b64(mac.digest())

    def head(self, fields: dict) -> Head:
        """``fields`` made ready to open many tokens' payloads (``sign(payload, head)``).

        Its JSON lacks the closing brace, and spaces after its last comma fill whole base64
        groups, so its encoding is a prefix of every such token's body, and the MAC absorbs it
        once: signing then serialises, encodes and hashes only what changes per token. The body
        still decodes to one JSON object, which ``verify`` reads as any other.
        """
        if not fields:
            raise ValueError("a token head needs a field")
        start = orjson.dumps(fields)[:-1] + b","
        body = _b64(start + b" " * (-len(start) % 3))
        mac = self._keyed.copy()
        mac.update(body)
        return Head(body, mac)

    def sign(self, payload: dict, head: Head | None = None) -> str:
        """Sign ``head``'s fields (none by default) and ``payload``'s, with issue time and a nonce
        added (the nonce deduplicates hits); a head's fields must not be in ``payload``.

        The nonce only has to be unique, not secret (the token is signed): a random per-process
        prefix and a counter, instead of a getrandom() system call per token.
        """
        data = orjson.dumps({**payload, "t": int(self._clock()), "n": f"{self._nonce_prefix}{next(self._counter):x}"})
        if head is None:
            body = _b64(data)
            return (body + b"." + self._mac(body)).decode()
        rest = _b64(data[1:])  # after the opening brace, which the head's part holds
        return (head.body + rest + b"." + self._mac(rest, head.mac)).decode()

    def verify(self, token: str) -> dict:
        if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 1:
            raise TokenError("malformed token", 400)
        body, mac = token.encode().split(b".")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenError("bad signature")
        try:
            payload = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError("malformed token", 400) from exc
        issued = payload.get("t") if isinstance(payload, dict) else None
        if not isinstance(issued, int):
            raise TokenError("malformed token", 400)
        if self._clock() - issued > self.ttl:
            raise TokenError("token expired", 410)
        return payload


def secret_from_env(demo: bool, var_dir: Path) -> bytes:
    """ADSERVE_SECRET, or in demo mode a random secret kept in var/ (never in the repo).

    A missing or short secret is a ``ValueError`` whose one-line message says how to make one.
    """
    value = os.environ.get("ADSERVE_SECRET")
    make = "python -c 'import secrets; print(secrets.token_hex(32))'"
    if value and len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"ADSERVE_SECRET is {len(value.encode())} bytes; it must be at least "
                         f"{MIN_SECRET_BYTES} random bytes: export ADSERVE_SECRET=$({make})")
    if value:
        return value.encode()
    if not demo:
        raise ValueError(f"ADSERVE_SECRET is not set: export ADSERVE_SECRET=$({make}) "
                         "(32+ random bytes), or run with --demo for a local demo")
    path = var_dir / "demo-secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(os.urandom(32).hex())
        path.chmod(0o600)
    return path.read_text().strip().encode()
