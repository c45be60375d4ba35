"""A return path per recipient (VERP), and a mailed unsubscribe that can be trusted."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from newsletter.ledger import Ledger
from newsletter.unsubscribe import read_signed
from newsletter.verp import issue_tag, read_return_path, recipient, return_path

from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"
BOUNCES = "bounces@example.org"


def test_a_return_path_reads_back_to_its_row_and_issue():
    for row_id in (1, 255, 256, 70_000, 2**40, 2**63 - 1):
        address = return_path(BOUNCES, SECRET, row_id, SEED)
        local, _, domain = address.partition("@")
        assert domain == "example.org" and local.startswith("bounces+")
        assert len(local) <= 64
        assert local == local.lower()
        assert read_return_path(SECRET, address) == (row_id, issue_tag(SEED))
        assert read_return_path(SECRET, f"<{address}>") == (row_id, issue_tag(SEED))


def test_a_relay_that_folds_case_changes_nothing():
    address = return_path(BOUNCES, SECRET, 1234, SEED)
    assert read_return_path(SECRET, address.upper()) == (1234, issue_tag(SEED))
    assert read_return_path(SECRET, address.title()) == (1234, issue_tag(SEED))


def test_the_longest_local_part_the_site_allows_stays_within_64_characters(project, run):
    local = "b" * 31
    address = return_path(f"{local}@example.org", SECRET, 2**63 - 1, "x" * 100)
    assert len(address.partition("@")[0]) == 64
    site = project / "newsletter.yaml"
    site.write_text(site.read_text() + f"bounce_address: {local}b@example.org\n")
    result = run("check", ISSUE)
    assert result.exit_code == 1
    assert "bounce_address" in result.output and "at most 31 characters" in result.output


def test_a_changed_character_another_key_or_another_address_is_refused():
    address = return_path(BOUNCES, SECRET, 42, SEED)
    local, _, domain = address.partition("@")
    token = local.partition("+")[2]
    for i, c in enumerate(token):
        changed = token[:i] + ("a" if c != "a" else "b") + token[i + 1 :]
        assert read_return_path(SECRET, f"bounces+{changed}@{domain}") is None, i
    assert read_return_path("another key entirely, also long enough", address) is None
    for cut in range(1, len(token)):
        assert read_return_path(SECRET, f"bounces+{token[:-cut]}@{domain}") is None
    assert read_return_path(SECRET, f"bounces+{token}a@{domain}") is None
    # A row id from one issue with the tag of another is not a forgery the MAC lets through.
    assert read_return_path(SECRET, return_path(BOUNCES, SECRET, 42, "other")) == (42, issue_tag("other"))


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "@",
        "+@",
        "bounces@example.org",
        "bounces+@example.org",
        "+aaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org",
        "bounces+" + "a" * 21,
        "bounces+" + "a" * 5000 + "@example.org",
        "bounces+" + "é" * 25 + "@example.org",
        "bounces+" + "\0" * 25 + "@example.org",
        "bounces+" + "=" * 24 + "@example.org",
        "bounces+" + "1" * 24 + "@example.org",
        "bounces+aaaaaaaaaaaaaaaaaaaaaa@example.org",  # 22 characters: no byte string is that long in base32
        "bounces+" + "a" * 32 + "@example.org",  # a row id with a leading zero byte
        "<>",
        None,
        42,
        b"bounces+aaaa@example.org",
    ],
)
def test_hostile_input_reads_as_nothing(hostile):
    assert read_return_path(SECRET, hostile) is None


def _site_with(project, line: str) -> None:
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


def test_each_message_returns_to_an_address_that_names_its_recipient_and_issue(project, run, smtp_server, inbox):
    _site_with(project, f"bounce_address: {BOUNCES}")
    addresses = ["ann@example.com", "Bob@Example.com", *(f"reader{i}@example.net" for i in range(10))]
    result = run("send", ISSUE, "--to", write_list(project, ["email", *addresses]), "--yes", "--connections", "3")
    assert result.exit_code == 0, result.output
    assert len(inbox.envelopes) == len(addresses)
    senders = set()
    with Ledger(project / "state" / "ledger.sqlite3") as ledger:
        for mail_from, rcpts in inbox.envelopes:
            assert re.fullmatch(r"bounces\+[a-z2-7]+@example\.org", mail_from), mail_from
            assert len(mail_from.partition("@")[0]) <= 64
            assert recipient(ledger, SECRET, mail_from) == (rcpts[0], SEED)
            assert recipient(ledger, SECRET, mail_from.upper()) == (rcpts[0], SEED)
            assert recipient(ledger, "another key entirely, also long enough", mail_from) is None
            senders.add(mail_from)
        # A reference into another issue's rows (a ledger started afresh reuses ids) is not this issue's.
        assert recipient(ledger, SECRET, return_path(BOUNCES, SECRET, 1, "another-issue")) is None
        assert recipient(ledger, SECRET, return_path(BOUNCES, SECRET, 10_000, SEED)) is None
    assert len(senders) == len(addresses)
    # The From line is unchanged: only the envelope differs.
    assert inbox.by_recipient("ann@example.com")["From"].addresses[0].addr_spec == "roundup@example.org"


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(project, run, smtp_server, inbox):
    result = run("send", ISSUE, "--to", write_list(project, ["email", "ann@example.com", "bob@example.com"]), "--yes")
    assert result.exit_code == 0, result.output
    assert [mail_from for mail_from, _ in inbox.envelopes] == ["roundup@example.org"] * 2


def test_a_test_copy_keeps_the_from_address_as_envelope_sender(project, run, smtp_server, inbox):
    _site_with(project, f"bounce_address: {BOUNCES}")
    result = run("send", ISSUE, "--test", "advisor@example.org")
    assert result.exit_code == 0, result.output
    assert inbox.envelopes == [("roundup@example.org", ["advisor@example.org"])]


def test_the_mailto_unsubscribe_carries_the_recipients_signed_token(project, run, smtp_server, inbox):
    result = run("send", ISSUE, "--to", write_list(project, ["email", "ann@example.com", "bob@example.com"]), "--yes")
    assert result.exit_code == 0, result.output
    tokens = set()
    for address in ("ann@example.com", "bob@example.com"):
        header = inbox.by_recipient(address)["List-Unsubscribe"]
        _https, mailto = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>", header).groups()  # https first
        to, _, query = mailto.removeprefix("mailto:").partition("?")
        assert to == "unsubscribe@example.org"
        name, _, subject = query.partition("=")
        assert name == "subject"
        word, _, token = unquote(subject).partition(" ")
        assert word == "unsubscribe"
        signed = read_signed(SECRET, "roundup.example.org", token)
        assert signed is not None and (signed.address, signed.issue) == (address, SEED)
        assert read_signed("another key entirely, also long enough", "roundup.example.org", token) is None
        tokens.add(token)
    assert len(tokens) == 2
