"""Unsubscribe tokens: only a genuine one is read, and reading one never raises (issue 7, point 14)."""

from __future__ import annotations

import base64
import secrets

import pytest

from newsletter.unsubscribe import make_token, read_token

from .conftest import SECRET

LIST_ID = "roundup.example.org"


# -- tokens -------------------------------------------------------------------


def test_token_round_trip_and_the_address_case():
    token = make_token(SECRET, LIST_ID, "Ann@Example.com ")
    assert read_token(SECRET, LIST_ID, token) == "ann@example.com"
    assert make_token(SECRET, LIST_ID, "ann@example.com") == token
    assert read_token(SECRET, LIST_ID, make_token(SECRET, LIST_ID, "zoë@exämple.org")) == "zoë@exämple.org"


def test_a_token_is_only_good_for_its_list_and_key():
    token = make_token(SECRET, LIST_ID, "ann@example.com")
    assert read_token(SECRET, "other.example.org", token) is None
    assert read_token(secrets.token_urlsafe(32), LIST_ID, token) is None


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def test_a_token_changed_anywhere_is_refused():
    token = make_token(SECRET, LIST_ID, "ann@example.com")
    for at in range(len(token)):
        if token[at] != ".":
            assert read_token(SECRET, LIST_ID, _flip(token, at)) is None, at


def test_another_address_cannot_borrow_a_signature():
    mine, theirs = (make_token(SECRET, LIST_ID, a) for a in ("ann@example.com", "bob@example.com"))
    assert read_token(SECRET, LIST_ID, theirs.split(".")[0] + "." + mine.split(".")[1]) is None


def _payload(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD = make_token(SECRET, LIST_ID, "ann@example.com")
PAYLOAD, SIGNATURE = GOOD.split(".")


@pytest.mark.parametrize(
    "token",
    [
        PAYLOAD + "." + SIGNATURE[:-1] + "é",  # non-ASCII signature: was a TypeError
        PAYLOAD + "." + "é" * len(SIGNATURE),
        "é" + GOOD,
        "",
        ".",
        PAYLOAD,
        "." + SIGNATURE,
        PAYLOAD + ".",
        GOOD + "." + SIGNATURE,
        PAYLOAD + "." + PAYLOAD + "." + SIGNATURE,
        GOOD + "\0",
        PAYLOAD + "\0." + SIGNATURE,
        "\0" * 100,
        PAYLOAD + "=." + SIGNATURE,  # padding
        PAYLOAD + "!." + SIGNATURE,  # not base64
        PAYLOAD[:-1] + "." + SIGNATURE,  # a length base64 cannot have
        _payload(b"\xff\xfe ann@example.com") + "." + SIGNATURE,  # not UTF-8
        "A" * 10_000_000 + "." + SIGNATURE,  # huge
        GOOD + "A" * 10_000_000,
        " " + GOOD,
        GOOD + "\n",
        "\udcff." + SIGNATURE,
    ],
)
def test_hostile_tokens_are_not_valid_and_never_raise(token):
    assert read_token(SECRET, LIST_ID, token) is None


def test_tokens_that_are_not_text_are_not_valid():
    assert read_token(SECRET, LIST_ID, GOOD.encode()) is None  # type: ignore[arg-type]
    assert read_token(SECRET, LIST_ID, None) is None  # type: ignore[arg-type]
