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

from newsletter import unsubscribe
from newsletter.unsubscribe import Signed, make_token, read_signed, read_token, unsubscribe_url

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


# -- the issue a link came from ------------------------------------------------------


@pytest.mark.parametrize("issue", ["2021-05-spring-solidarity", "été 2021", "x" * 100, "日本語" * 33])
def test_a_token_carries_the_issue_of_its_link(issue):
    url = unsubscribe_url("https://example.org/unsubscribe?t={token}", SECRET, LIST_ID, "Ann@Example.com", issue)
    [carried] = parse_qs(urlsplit(url).query)["t"]
    assert quote(carried, safe="") == carried
    assert read_signed(SECRET, LIST_ID, carried) == Signed("ann@example.com", issue)
    assert read_token(SECRET, LIST_ID, carried) == "ann@example.com"
    # The longest address with the longest issue id still reads.
    longest = make_token(SECRET, LIST_ID, "a" * 64 + "@" + "b" * 189, issue)
    assert read_signed(SECRET, LIST_ID, longest) == Signed("a" * 64 + "@" + "b" * 189, issue)


def test_a_link_made_before_tokens_carried_the_issue_still_works():
    # The form of the links already in people's inboxes: the address alone, signed.
    old = _b64(b"ann@example.com") + "." + unsubscribe._signature(SECRET, LIST_ID, "ann@example.com")
    assert old == make_token(SECRET, LIST_ID, "ann@example.com")
    assert read_signed(SECRET, LIST_ID, old) == Signed("ann@example.com", None)


@pytest.mark.parametrize("text", ["ann@example.com\0", "ann@example.com\0spring\0", "ann@example.com\0\0spring"])
def test_a_signed_payload_make_token_never_writes_is_refused(text):
    # Signed with the real key, so that only the reading of the payload can refuse it.
    token = _b64(text.encode()) + "." + unsubscribe._signature(SECRET, LIST_ID, text)
    assert read_signed(SECRET, LIST_ID, token) is None
    assert read_token(SECRET, LIST_ID, token) is None


def test_the_issue_cannot_be_moved_into_the_address():
    one = make_token(SECRET, LIST_ID, "ann@example.com", "spring")
    assert read_signed(SECRET, LIST_ID, one) == Signed("ann@example.com", "spring")
    # The payload and signature of "ann@example.com" + NUL + "spring" as one address would be the same token:
    # make_token refuses a NUL, so nobody is sent such a token for an address of their own.
    with pytest.raises(ValueError):
        make_token(SECRET, LIST_ID, "ann@example.com\0spring")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
