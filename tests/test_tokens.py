"""Reading unsubscribe tokens: what tests/test_secrets.py leaves out.

One address has exactly one token under a key: no other spelling of it may
pass, or a token could be varied and replayed past a check that compares
tokens. Tokens travel in URLs and headers untouched.
"""

from __future__ import annotations

import base64
import string
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from newsletter.unsubscribe import make_token, read_token, unsubscribe_url

from .support import SECRET

LIST_ID = "roundup.example.org"
BASE64URL = string.ascii_letters + string.digits + "-_"


def _decodes_to(payload: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except ValueError:
        return None


@pytest.mark.parametrize("address", ["ann@example.ca", "bo@example.org", "zoë@exämple.org"])
def test_another_spelling_of_the_same_address_is_refused(address):
    token = make_token(SECRET, LIST_ID, address)
    payload, signature = token.split(".")
    # base64 leaves spare bits in the last character when the length is not a multiple of 3:
    # several characters there decode to the same bytes. Only the one make_token writes is good.
    same = [
        payload[:-1] + c
        for c in BASE64URL
        if c != payload[-1] and _decodes_to(payload[:-1] + c) == _decodes_to(payload)
    ]
    assert same, "this address leaves no spare bits; pick one whose length is not a multiple of 3"
    for variant in same:
        assert read_token(SECRET, LIST_ID, f"{variant}.{signature}") is None, variant
    assert read_token(SECRET, LIST_ID, token) == address


@pytest.mark.parametrize(
    "address",
    ["ann@example.com", "a+news@mail.example.org", "zoë@exämple.org", "?&=#/%@example.org", "~!$'*@example.org"],
)
def test_a_token_needs_no_escaping_in_a_url(address):
    token = make_token(SECRET, LIST_ID, address)
    assert quote(token, safe="") == token
    url = unsubscribe_url("https://example.org/unsubscribe?t={token}", SECRET, LIST_ID, address)
    [carried] = parse_qs(urlsplit(url).query)["t"]
    assert read_token(SECRET, LIST_ID, carried) == address


def test_the_longest_address_mail_allows_still_has_a_token():
    address = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 61])  # 254 characters, RFC 5321's limit
    assert len(address) == 254
    token = make_token(SECRET, LIST_ID, address)
    assert read_token(SECRET, LIST_ID, token) == address


def test_the_token_goes_wherever_the_site_puts_it():
    url = unsubscribe_url("https://example.org/u/{token}/confirm", SECRET, LIST_ID, "ann@example.com")
    token = urlsplit(url).path.split("/")[2]
    assert url == f"https://example.org/u/{token}/confirm"
    assert read_token(SECRET, LIST_ID, token) == "ann@example.com"


def test_a_list_id_is_not_confused_with_the_start_of_an_address():
    # The signature covers list id and address apart: moving characters from one to the other is another token.
    one = make_token(SECRET, "roundup.example.org", "ann@example.com")
    other = make_token(SECRET, "roundup.example.orga", "nn@example.com")
    assert one.split(".")[1] != other.split(".")[1]
    assert read_token(SECRET, "roundup.example.orga", one) is None
