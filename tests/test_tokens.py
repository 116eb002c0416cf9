"""Tracking tokens: signed, expiring, and useless once altered."""

from __future__ import annotations

import base64

import orjson
import pytest

from adserve.tokens import Signer, TokenError

SECRET = b"0123456789abcdef0123456789abcdef"


class Tick:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_adds_time_and_nonce():
    signer = Signer(SECRET, 3600)
    payload = signer.verify(signer.sign({"c": 12174, "l": "https://a.example/"}))
    assert payload["c"] == 12174 and payload["l"] == "https://a.example/"
    assert isinstance(payload["t"], int) and len(payload["n"]) >= 13


def test_each_token_has_its_own_nonce():
    signer = Signer(SECRET, 3600)
    assert signer.verify(signer.sign({}))["n"] != signer.verify(signer.sign({}))["n"]


def test_altered_payload_is_refused():
    signer = Signer(SECRET, 3600)
    body, mac = signer.sign({"l": "https://good.example/"}).split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["l"] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    with pytest.raises(TokenError) as caught:
        signer.verify(f"{forged}.{mac}")
    assert caught.value.status == 403


def test_other_secret_is_refused():
    token = Signer(b"another-secret-of-enough-length!", 3600).sign({"c": 1})
    with pytest.raises(TokenError):
        Signer(SECRET, 3600).verify(token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, "!!!.???", "e30.AAAA", "e30.\u00e9", "\ud800.x"])
def test_malformed_tokens(token):
    with pytest.raises(TokenError) as caught:
        Signer(SECRET, 3600).verify(token)
    assert caught.value.status in (400, 403)


def test_expiry():
    tick = Tick()
    signer = Signer(SECRET, 60, clock=tick)
    token = signer.sign({"c": 1})
    tick.now += 59
    signer.verify(token)
    tick.now += 2
    with pytest.raises(TokenError) as caught:
        signer.verify(token)
    assert caught.value.status == 410


def test_secret_under_32_bytes_is_refused():
    with pytest.raises(ValueError):
        Signer(b"x" * 31, 60)
    Signer(b"x" * 32, 60)
