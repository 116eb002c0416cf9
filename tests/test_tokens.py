"""Tracking tokens: signed, expiring, and useless once altered."""

from __future__ import annotations

import base64
import re

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


AD = {"c": 12174, "cr": "cr-1", "u": "reader-1", "l": "https://good.example/"}
WIDGET = {"s": "w", "u": "reader-1", "p": "page-1", "its": ["a1", "a2", "a3"]}


def _payload(token: str) -> dict:
    body = token.split(".")[0]
    return orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _body(payload: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def _refused(signer: Signer, token: str) -> None:
    with pytest.raises(TokenError) as caught:
        signer.verify(token)
    assert caught.value.status == 403


# Ad tokens and widget tokens take different paths after verification (a landing URL, or an
# item list and a position): both kinds must be useless once altered.
@pytest.mark.parametrize("payload, field, value", [
    (AD, "l", "https://evil.example/"), (AD, "c", 1), (AD, "u", "someone-else"),
    (WIDGET, "its", ["a1", "planted", "a3"]), (WIDGET, "its", ["a1", "a2", "a3", "planted"]),
    (WIDGET, "u", "someone-else")])
def test_altered_payload_is_refused(payload, field, value):
    signer = Signer(SECRET, 3600)
    token = signer.sign(payload)
    altered = {**_payload(token), field: value}
    _refused(signer, f"{_body(altered)}.{token.split('.')[1]}")


@pytest.mark.parametrize("payload", [AD, WIDGET])
@pytest.mark.parametrize("mac", ["AAAAAAAAAAAAAAAAAAAAAA", "junk", "", "x" * 100])
def test_forged_mac_is_refused(payload, mac):
    signer = Signer(SECRET, 3600)
    _refused(signer, f"{signer.sign(payload).split('.')[0]}.{mac}")


@pytest.mark.parametrize("payload", [AD, WIDGET])
def test_an_unsigned_body_is_refused(payload):
    """A token built without the secret: right shape, fresh time, made-up MAC."""
    _refused(Signer(SECRET, 3600), f"{_body({**payload, 't': 1_800_000_000, 'n': 'x'})}.bm90LWEtbWFj")


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
    tick.now += 60
    signer.verify(token)  # valid for ttl seconds, the last one included
    tick.now += 1
    with pytest.raises(TokenError) as caught:
        signer.verify(token)
    assert (caught.value.status, str(caught.value)) == (410, "token expired")


def test_secret_under_32_bytes_is_refused():
    with pytest.raises(ValueError, match="^the signing secret must be at least 32 bytes$"):
        Signer(b"x" * 31, 60)
    Signer(b"x" * 32, 60)


def test_tokens_are_url_safe_unpadded_and_round_trip():
    """Tokens travel in query strings as they stand: base64url, no padding, no line breaks."""
    signer = Signer(SECRET, 3600)
    for n in range(400):  # payload lengths cover every padding case; MACs cover every character
        payload = {"l": f"https://a.example/{'x' * (n % 7)}?q={n}", "its": [f"item-{i}" for i in range(n % 5)]}
        token = signer.sign(payload)
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}", token), token
        assert {k: v for k, v in signer.verify(token).items() if k not in ("t", "n")} == payload


def test_a_token_with_a_head_is_one_plain_token():
    """A head's part is encoded and hashed once, but the token is what ``sign`` alone would
    make of the same fields: one base64url JSON object under one MAC, for every head length."""
    signer = Signer(SECRET, 3600, clock=Tick())
    for n in range(60):
        head = {"c": n, "l": f"https://a.example/{'x' * (n % 7)}", "s": "s" * (n // 7)}
        varying = {"u": "u" * (n % 5), "p": "page", "its": [f"item-{i}" for i in range(n % 3)]}
        token = signer.sign(varying, signer.head(head))
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}", token), token
        payload = signer.verify(token)
        assert payload == {**head, **varying, "t": 1_800_000_000, "n": payload["n"]}
        assert _payload(token) == payload  # readers that decode it themselves see the same
        body, mac = token.split(".")
        assert mac == signer._mac(body.encode()).decode()  # the MAC a verifier of any version computes
        _refused(signer, f"{_body({**payload, 'c': n + 1})}.{mac}")


def test_a_head_needs_a_field():
    with pytest.raises(ValueError):
        Signer(SECRET, 3600).head({})


def _signed(body: bytes) -> str:
    """A correctly signed token around any body: what only a leaked secret could make."""
    signer = Signer(SECRET, 3600)
    return f"{body.decode()}.{signer._mac(body).decode()}"


@pytest.mark.parametrize("token, status, message", [
    ("", 400, "malformed token"), ("a.b.c", 400, "malformed token"), ("\u00e9.x", 400, "malformed token"),
    ("e30.AAAA", 403, "bad signature"), ("x" * 4095 + ".", 403, "bad signature"),  # 4,096: not too long
    ("x" * 4096 + ".", 400, "malformed token"),
    (_signed(b"bm90IGpzb24"), 400, "malformed token"),            # signed, but not JSON
    (_signed(b"WzFd"), 400, "malformed token"),                   # signed JSON, but a list
    (_signed(b"eyJjIjoxfQ"), 400, "malformed token"),             # signed, but no issue time
    (_signed(b"eyJ0IjoiMSJ9"), 400, "malformed token")])          # an issue time that is no number
def test_refusals_say_why(token, status, message):
    with pytest.raises(TokenError) as caught:
        Signer(SECRET, 3600).verify(token)
    assert (caught.value.status, str(caught.value)) == (status, message)

