"""Header lines that every server accepts and every reader decodes to exactly what was written.

RFC 5322 2.1.1: a line SHOULD stay within 78 characters and MUST within 998
(servers answer "500 Line too long"); RFC 2047 2: an encoded-word is at most
75 characters. Each value must come back exactly as written: text that looks
like an encoded-word is shown literally, never decoded into something else.
"""

from __future__ import annotations

import email
import email.policy
import json
import re

import lxml.html
import pytest

from newsletter.errors import NewsletterError
from newsletter.message import address_header, header, list_header

from .support import MINIMAL, write_issue, write_list

CRLF = "\r\n"
ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
LOOKS_ENCODED = "=?utf-8?q?a=0D=0Ab?="  # decoded, it would be "a", CR, LF, "b"
EMOJI = "\U0001f600" * 200


def assert_on_the_wire(raw: str | bytes, *, unbreakable: tuple[str, ...] = ()) -> None:
    """ASCII; no line over 998 characters, none over 78 in a header that can be folded, no control
    character in a header; encoded-words within 75 characters.

    A header in `unbreakable` may have a longer line: one piece that cannot be
    folded (List-Unsubscribe's URL with its token).
    """
    text = raw.decode("ascii") if isinstance(raw, bytes) else raw
    assert text.isascii()
    assert all(len(line) <= 998 for line in text.split(CRLF))
    head = text.split(CRLF + CRLF, 1)[0]
    field = ""
    for line in head.split(CRLF):
        if not line[:1].isspace():
            field = line.partition(":")[0]
        assert len(line) <= (998 if field in unbreakable else 78), line
        assert not CONTROL.search(line), line  # RFC 5322 2.2: printable characters and folding whitespace only
    for word in ENCODED_WORD.findall(head):
        assert len(word) <= 75, word


def parsed(lines: str) -> email.message.EmailMessage:
    return email.message_from_bytes((lines + CRLF + "body" + CRLF).encode("ascii"), policy=email.policy.default)


def display_name(message: email.message.Message, name: str) -> str:
    """The display name in header `name`, decoded as RFC 2047 6.2 says.

    Python 3.11's address parser keeps the space between two adjacent
    encoded-words of a display name (CPython gh-128110, fixed upstream since),
    which RFC 2047 6.2 says readers ignore; its parser of unstructured text
    ignores it. So the phrase is decoded with that one, after unquoting.
    """
    raw = next(value for key, value in message.raw_items() if key.lower() == name.lower())
    phrase = raw.replace(CRLF, "").strip().rpartition(" <")[0]
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return str(email.policy.default.header_factory("Subject", phrase))


# The pure pieces: message.header, address_header, list_header.


@pytest.mark.parametrize(
    "subject",
    [
        "x" * 1200,
        EMOJI,
        "Stand with " + "y" * 100 + " today",
        "z" * 72 + " first",
        "日本語のタイトル " * 40,
        "a " * 600,
    ],
    ids=["1200 x", "200 emoji", "a long word", "a long first word", "long CJK", "600 words"],
)
def test_a_long_subject_folds_into_short_lines(subject):
    lines = header("Subject", subject)
    assert_on_the_wire(lines)
    assert str(parsed(lines)["Subject"]) == subject


@pytest.mark.parametrize(
    "subject",
    [LOOKS_ENCODED, f"Read this {LOOKS_ENCODED} now", "=?utf-8?b?SGk=?=", "a=?b", "=?", "_=?_"],
)
def test_a_subject_that_looks_encoded_is_shown_as_written(subject):
    lines = header("Subject", subject)
    assert_on_the_wire(lines)
    assert str(parsed(lines)["Subject"]) == subject
    assert LOOKS_ENCODED not in lines


@pytest.mark.parametrize(
    "subject",
    [" leading", "trailing ", "two  spaces", "a\tb", "a\x00b\x1b\x7f", "a\u2028b", " " * 1000],
    ids=["leading space", "trailing space", "double space", "tab", "control characters", "U+2028", "1000 spaces"],
)
def test_spaces_and_control_characters_in_the_subject_survive(subject):
    lines = header("Subject", subject)
    assert_on_the_wire(lines)
    assert str(parsed(lines)["Subject"]) == subject


def test_a_plain_subject_stays_readable():
    assert header("Subject", "Crisis and Tactical Round Up") == "Subject: Crisis and Tactical Round Up\r\n"
    sentence = "Stand with Belarus, show solidarity with Myanmar, help reunite Uyghur families. " * 5
    lines = header("Subject", sentence.strip())
    assert_on_the_wire(lines)
    assert "=?" not in lines and str(parsed(lines)["Subject"]) == sentence.strip()


@pytest.mark.parametrize("field", ["From", "To", "List-Id"])
@pytest.mark.parametrize(
    "name",
    ["x" * 1200, "Campaigns " * 120, EMOJI, "Zoë Ñúñez " * 30, "Ζωή " * 50],
    ids=["1200 x", "1200 in words", "200 emoji", "long Latin-1", "long Greek"],
)
def test_a_long_display_name_folds_into_encoded_words(field, name):
    address = "roundup.example.org" if field == "List-Id" else "ann@example.com"
    lines = address_header(field, name, address)
    assert_on_the_wire(lines)
    message = parsed(lines)
    assert display_name(message, field) == name
    if field != "List-Id":
        assert message[field].addresses[0].addr_spec == address
    assert lines.endswith(f"<{address}>\r\n")


@pytest.mark.parametrize(
    "name",
    [LOOKS_ENCODED, f"Eve {LOOKS_ENCODED}", "=?utf-8?b?SGk=?= Bob", "Zoë Ñúñez", "Tab\there", "Bell\x07"],
)
def test_a_display_name_that_is_not_plain_ascii_is_encoded(name):
    lines = address_header("To", name, "eve@example.com")
    assert_on_the_wire(lines)
    message = parsed(lines)
    assert display_name(message, "To") == name
    assert message["To"].addresses[0].addr_spec == "eve@example.com"
    assert LOOKS_ENCODED not in lines


@pytest.mark.parametrize(
    "name",
    ["Ann  Lee", " Ann", "Ann ", 'Eve "the" \\ <x>', "O'Brien, Dr. A.", "a,b@c.d", "Ann"],
)
def test_a_plain_display_name_keeps_its_spaces_and_quotes(name):
    lines = address_header("To", name, "ann@example.com")
    assert_on_the_wire(lines)
    assert "=?" not in lines
    address = parsed(lines)["To"].addresses[0]
    assert (address.display_name, address.addr_spec) == (name, "ann@example.com")


def test_a_short_plain_name_is_one_line_and_a_longer_one_puts_the_address_on_the_next():
    assert address_header("To", "Ann", "ann@example.com") == "To: Ann <ann@example.com>\r\n"
    assert address_header("To", "", "ann@example.com") == "To: ann@example.com\r\n"
    organisation = "Amnesty International Canada (English-speaking section)"
    lines = address_header("List-Id", organisation, "roundup.example.org")
    assert lines == f'List-Id: "{organisation}"\r\n <roundup.example.org>\r\n'


def test_line_breaks_are_refused_not_encoded():
    for bad in ("a\r\nBcc: victim@example.com", "a\nb", "a\rb"):
        with pytest.raises(NewsletterError, match="line break"):
            header("Subject", bad)
        with pytest.raises(NewsletterError, match="line break"):
            address_header("To", bad, "eve@example.com")
        with pytest.raises(NewsletterError, match="line break"):
            list_header("List-Unsubscribe", [f"<https://example.org/{bad}>"])


def test_list_unsubscribe_folds_between_its_targets():
    url = "https://example.org/unsubscribe?t=" + "T" * 900
    mailto = "mailto:unsubscribe@example.org?subject=unsubscribe"
    lines = list_header("List-Unsubscribe", [f"<{url}>", f"<{mailto}>"])
    assert_on_the_wire(lines, unbreakable=("List-Unsubscribe",))
    assert lines == f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"
    assert str(parsed(lines)["List-Unsubscribe"]) == f"<{url}>, <{mailto}>"
    short = list_header("List-Unsubscribe", ["<https://e.org/u>", "<mailto:u@e.org>"])
    assert short == "List-Unsubscribe: <https://e.org/u>, <mailto:u@e.org>\r\n"


def test_a_target_too_long_for_any_line_is_refused():
    with pytest.raises(NewsletterError, match="998"):
        list_header("List-Unsubscribe", ["<https://example.org/?t=" + "T" * 1000 + ">"])


# End to end: what a real SMTP server receives.


def edit_site(project, old: str, new: str) -> None:
    site = project / "newsletter.yaml"
    text = site.read_text(encoding="utf-8")
    assert old in text
    site.write_text(text.replace(old, new), encoding="utf-8")


def issue_with_subject(project, subject: str):
    # A JSON string is a YAML double-quoted scalar.
    return write_issue(project, f"id: test\nsubject: {json.dumps(subject, ensure_ascii=False)}\n" + MINIMAL.lstrip())


SENDER = " ".join(["Amnesty Crisis and Tactical Team"] * 40)  # 1,319 characters
ORGANISATION = "\u270a" * 200


@pytest.mark.parametrize("subject", [LOOKS_ENCODED, "x" * 1200, "\U0001f33b" * 200], ids=["encoded", "long", "emoji"])
def test_hostile_headers_reach_the_server_folded_and_decode_exactly(project, run, smtp_server, inbox, subject):
    edit_site(project, "name: Amnesty Crisis and Tactical Team", f"name: {json.dumps(SENDER)}")
    edit_site(
        project,
        "organisation: Amnesty International Canada (English-speaking section)",
        f"organisation: {ORGANISATION}",
    )
    issue = issue_with_subject(project, subject)
    checked = run("check", issue)
    assert checked.exit_code == 0, checked.output
    names = {"zoe@example.com": EMOJI, "eve@example.com": LOOKS_ENCODED, "ann@example.com": "Ann  Lee"}
    rows = ["email,name", *(f"{address},{name}" for address, name in names.items())]
    result = run("send", issue, "--to", write_list(project, rows), "--yes")
    assert result.exit_code == 0, result.output
    assert "sent 3, failed 0" in result.output
    for raw in inbox.raw:
        assert_on_the_wire(raw, unbreakable=("List-Unsubscribe",))
    for address, name in names.items():
        message = inbox.by_recipient(address)
        assert message["Subject"] == subject
        assert display_name(message, "To") == name
        assert message["To"].addresses[0].addr_spec == address
        assert display_name(message, "From") == SENDER
        assert message["From"].addresses[0].addr_spec == "roundup@example.org"
        assert display_name(message, "List-Id") == ORGANISATION
        assert message["List-Id"].endswith("<roundup.example.org>")
    assert inbox.by_recipient("eve@example.com")["To"].addresses[0].display_name == LOOKS_ENCODED


def test_a_long_unsubscribe_address_still_reaches_a_long_recipient_address(project, run, smtp_server, inbox):
    # 600 characters: with the token of a 254-character address the URL is 957, too long
    # to share a line with the mailto target, short enough for a line of its own.
    pattern = "https://example.org/unsubscribe/" + "u" * 558 + "?t={token}"
    assert len(pattern) == 600
    edit_site(project, '"https://example.org/unsubscribe?t={token}"', json.dumps(pattern))
    issue = issue_with_subject(project, "A roundup")
    assert run("check", issue).exit_code == 0
    recipient = "r" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 57 + ".org"  # as long as an address can be
    assert len(recipient) == 254
    result = run("send", issue, "--to", write_list(project, ["email", recipient]), "--yes")
    assert result.exit_code == 0, result.output
    assert "sent 1, failed 0" in result.output
    assert_on_the_wire(inbox.raw[0], unbreakable=("List-Unsubscribe", "To"))
    message = inbox.by_recipient(recipient)
    https, mailto = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>", message["List-Unsubscribe"]).groups()
    assert len(https) > 900
    assert mailto == "mailto:unsubscribe@example.org?subject=unsubscribe%20" + https.rpartition("t=")[2]
    html = message.get_body(("html",)).get_content()
    links = [a.get("href") for a in lxml.html.fromstring(html).iter("a") if a.text_content().strip() == "Unsubscribe"]
    assert links == [https]


# `check` refuses what no header could carry.


def failing_check(run, issue) -> list[str]:
    result = run("check", issue)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://example.org/unsubscribe?t={token} now", "a space"),
        ("https://example.org/unsubscribe?t={token}>, <https://evil.example/", "'>'"),
        ("https://example.org/u<x>?t={token}", "'<'"),
        ("https://example.org/unsubscribe?list=a,b&t={token}", "','"),
        ('https://example.org/unsubscribe?t={token}"', "'\"'"),
        ("https://example.org/" + "u" * 700 + "?t={token}", "too long"),
    ],
    ids=["space", "angle brackets and comma", "less-than", "comma", "double quote", "too long"],
)
def test_check_refuses_an_unsubscribe_address_that_would_break_list_unsubscribe(project, run, url, says):
    edit_site(project, '"https://example.org/unsubscribe?t={token}"', json.dumps(url))
    lines = failing_check(run, issue_with_subject(project, "A roundup"))
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: newsletter.yaml:15:18: unsubscribe_url: "), lines
    assert says in lines[0]


def test_check_refuses_a_list_id_longer_than_rfc_2919_allows(project, run):
    edit_site(project, "list_id: roundup.example.org", "list_id: " + "a" * 300 + ".example.org")
    lines = failing_check(run, issue_with_subject(project, "A roundup"))
    assert len(lines) == 1 and lines[0].startswith("error: newsletter.yaml:13:10: list_id: "), lines
    assert "255" in lines[0]
