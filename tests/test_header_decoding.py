"""Headers as the readers that did not write them decode them.

tests/test_headers.py holds the headers to the line limits and reads them
back with the `email` package's modern parser. Mail readers are older and
stricter than that: here every value also goes through `email.header`'s
decode_header (the API many tools still use), the strict policy's defect
check, and each encoded-word on its own, as RFC 2047 6.3 lets a reader
decode it.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest

from newsletter.message import address_header, header, list_header

CRLF = "\r\n"
ENCODED_WORD = re.compile(r"=\?utf-8\?([bq])\?([^?\s]+)\?=")  # RFC 2047 2: encoded-text is at least one character

SUBJECTS = [
    "",
    "Plain words only",
    "Zoë and friends meet 日本 here",
    " leading and trailing ",
    "two  spaces",
    "=?utf-8?q?looks_encoded?= but is not",
    "Bell\x07 and escape\x1b",
    "\U0001f600" * 30,
    "Ünï " * 30,
    "Stand with Belarus, show solidarity with Myanmar, help reunite Uyghur families, and more: " * 3,
    "a" * 76,
    "a" * 77,
    "日本語のタイトル、ミャンマーとの連帯、ベラルーシ" * 5,
    "mixed: Ζωή, Zoë, 日本, \U0001f600, and plain",
]


def _value(lines: str, name: str) -> str:
    """The header's value as it travels: unfolded (RFC 5322 2.2.3), without the space after the colon."""
    value = lines[len(name) + 1 :].replace(CRLF, "")
    return value[1:] if value.startswith(" ") else value


def _parse(lines: str) -> email.message.EmailMessage:
    return email.message_from_bytes((lines + CRLF + "body" + CRLF).encode("ascii"), policy=email.policy.strict)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_decodes_the_same_with_the_older_email_api(subject):
    lines = header("Subject", subject)
    assert str(make_header(decode_header(_value(lines, "Subject")))) == subject


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_has_no_defect_a_strict_reader_would_flag(subject):
    message = _parse(header("Subject", subject))
    assert message["Subject"] == subject
    assert not message["Subject"].defects and not message.defects


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_survives_servers_that_strip_or_collapse_spaces(subject):
    """Some servers strip white space at the end of a line, some readers collapse runs of spaces:
    so a subject goes out as single-spaced words and whole encoded-words, extra spaces inside those."""
    lines = header("Subject", subject)
    for line in lines.split(CRLF)[:-1]:
        assert line == line.rstrip() and "  " not in line, line
    for token in _value(lines, "Subject").split(" "):
        assert "=?" not in token or ENCODED_WORD.fullmatch(token), token


@pytest.mark.parametrize("subject", [s for s in SUBJECTS if not s.isascii() or "=?" in s])
def test_each_encoded_word_holds_whole_characters(subject):
    """A reader may decode each encoded-word alone: none may end in the middle of a UTF-8 sequence."""
    lines = header("Subject", subject)
    words = ENCODED_WORD.findall(lines)
    assert words
    for encoding, text in words:
        [(data, charset)] = decode_header(f"=?utf-8?{encoding}?{text}?=")
        assert charset == "utf-8"
        data.decode("utf-8")  # strict: raises on a split character


NAMES = [
    "Ann",
    "Smith, Ann",
    'A "quoted" name',
    "Ann (the boss)",
    "back\\slash",
    "Zoë Ñúñez",
    "\U0001f600" * 3,
    "Ζωή " * 20,
    "<not-an-address@example.org>",
    "ann@example.com",
    "=?utf-8?b?SGk=?=",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("address", ["ann@example.com", "a+news@mail.example.org"])
def test_a_recipient_reads_back_as_one_name_and_one_address(name, address):
    lines = address_header("To", name, address)
    message = _parse(lines)
    [parsed] = message["To"].addresses
    assert parsed.addr_spec == address and not message["To"].defects
    # The older API: parseaddr unquotes, decode_header decodes (Python 3.11's modern parser keeps
    # the space between two encoded-words of a name, CPython gh-128110; see tests/test_headers.py).
    shown, found = parseaddr(_value(lines, "To"))
    assert (str(make_header(decode_header(shown))), found) == (name, address)
    # The address itself is never encoded: a server routes on it as written.
    assert lines.rstrip(CRLF).endswith(f"<{address}>")


def test_a_name_that_looks_like_an_address_never_becomes_one():
    for name in ("victim@example.org", "<victim@example.org>", "a@b.c, victim@example.org"):
        message = _parse(address_header("To", name, "ann@example.com"))
        assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com"]


def test_list_targets_read_back_whole_folded_or_not():
    url = "https://example.org/unsubscribe?t=" + "T" * 120
    for targets in (["<https://e.org/u>"], ["<https://e.org/u>", "<mailto:u@e.org>"], [f"<{url}>", "<mailto:u@e.org>"]):
        lines = list_header("List-Unsubscribe", targets)
        assert re.findall(r"<[^<>]+>", _value(lines, "List-Unsubscribe")) == targets
        # Folded only after a comma: no target is cut across lines.
        for line in lines.split(CRLF):
            assert line.count("<") == line.count(">")
        assert _parse(lines)["List-Unsubscribe"] == ", ".join(targets)
