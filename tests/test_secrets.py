"""The key that signs unsubscribe links, and the tokens it signs (issue 7, points 11, 12, 14)."""

from __future__ import annotations

import base64
import os
import secrets

import pytest

from newsletter.unsubscribe import (
    PREVIEW_SECRET,
    export_key,
    make_token,
    read_signed,
    read_token,
    secret_fingerprint,
    secret_problem,
)

from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"
LIST_ID = "roundup.example.org"
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

# -- which keys are strong enough ---------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(16),  # exactly 128 bits: the least that passes
        lambda: secrets.token_hex(32),
        lambda: base64.b64encode(os.urandom(24)).decode(),  # what `openssl rand -base64 24` prints
    ],
    ids=["token_urlsafe(32)", "token_hex(16)", "token_hex(32)", "openssl rand -base64 24"],
)
def test_keys_from_a_generator_are_accepted(make):
    for _ in range(200):  # many draws: a generated key must never be refused by bad luck
        key = make()
        assert secret_problem(key) is None, key


@pytest.mark.parametrize(
    "key",
    [
        "zq",
        "test-secret",
        "password1234567890",
        "a" * 64,
        "abcd" * 16,
        "abcdefghijklmnopqrstuvwxyz0123456789",  # long, every character different, but a sequence
        "0123456789" * 4,
        secrets.token_hex(16)[:30],  # 120 bits: just short of the bar
        " " * 40,
        PREVIEW_SECRET,  # strong-looking, but printed in the source code
    ],
)
def test_weak_or_public_keys_are_refused_with_how_to_make_one(key):
    problem = secret_problem(key)
    assert problem is not None
    assert "NEWSLETTER_SECRET" in problem and MAKE_ONE in problem
    assert not key.strip() or key not in problem  # the key itself is never printed


def test_the_refusal_says_what_was_found():
    problem = secret_problem("zq")
    assert "2 characters" in problem and "128" in problem


def test_a_key_with_bytes_that_are_not_utf8_is_judged_not_crashed_on():
    # os.environ hands such bytes over as lone surrogates.
    key = os.fsdecode(os.urandom(40) + b"\xff")
    secret_problem(key)
    assert read_token(key, LIST_ID, make_token(key, LIST_ID, "ann@example.com")) == "ann@example.com"
    # The export key is derived from it too (serve computes it at start): was a UnicodeEncodeError.
    assert export_key(key) != export_key(os.fsdecode(os.urandom(40) + b"\xfe"))


# -- the fingerprint a later run compares -------------------------------------


def test_fingerprint_tells_keys_apart_without_showing_them():
    one, other = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    assert secret_fingerprint(one) == secret_fingerprint(one)
    assert secret_fingerprint(one) != secret_fingerprint(other)
    assert one not in secret_fingerprint(one)
    # No token signed with the key carries the fingerprint: it reveals nothing a link does not.
    assert secret_fingerprint(one) not in make_token(one, LIST_ID, "ann@example.com")


def test_fingerprint_of_a_key_is_the_same_in_every_version():
    # Ledgers keep it from one run to the next; a new release computing it
    # differently would claim every resumed send changed its key.
    assert secret_fingerprint(SECRET) == "23ca146660816948"


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


@pytest.mark.parametrize("issue", [None, "2021-05-spring-solidarity"])
def test_a_token_changed_anywhere_is_refused(issue):
    token = make_token(SECRET, LIST_ID, "ann@example.com", issue)
    assert read_signed(SECRET, LIST_ID, token).issue == issue
    for at in range(len(token)):
        if token[at] != ".":
            assert read_token(SECRET, LIST_ID, _flip(token, at)) is None, at
            assert read_signed(SECRET, LIST_ID, _flip(token, at)) is None, at


def test_another_address_cannot_borrow_a_signature():
    mine, theirs = (make_token(SECRET, LIST_ID, a) for a in ("ann@example.com", "bob@example.com"))
    assert read_token(SECRET, LIST_ID, theirs.split(".")[0] + "." + mine.split(".")[1]) is None


def _payload(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD = make_token(SECRET, LIST_ID, "ann@example.com")
PAYLOAD, SIGNATURE = GOOD.split(".")
WITH_ISSUE = make_token(SECRET, LIST_ID, "ann@example.com", "spring")


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
        # The issue dropped, changed or added to under the signature of another.
        PAYLOAD + "." + WITH_ISSUE.split(".")[1],
        _payload(b"ann@example.com\0summer") + "." + WITH_ISSUE.split(".")[1],
        _payload(b"ann@example.com\0spring") + "." + SIGNATURE,
        _payload(b"ann@example.com\0") + "." + SIGNATURE,
        _payload(b"ann@example.com\0spring\0") + "." + WITH_ISSUE.split(".")[1],
        WITH_ISSUE + "\0",
    ],
)
def test_hostile_tokens_are_not_valid_and_never_raise(token):
    assert read_token(SECRET, LIST_ID, token) is None
    assert read_signed(SECRET, LIST_ID, token) is None


def test_tokens_that_are_not_text_are_not_valid():
    assert read_token(SECRET, LIST_ID, GOOD.encode()) is None  # type: ignore[arg-type]
    assert read_token(SECRET, LIST_ID, None) is None  # type: ignore[arg-type]


# -- the commands that use the key --------------------------------------------


def test_a_real_send_refuses_a_weak_key(project, run, smtp_server, inbox, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "password1234567890")
    result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET is too weak" in result.stderr and MAKE_ONE in result.stderr
    assert "password1234567890" not in result.output
    assert "Traceback" not in result.output
    assert inbox.recipients() == {}


def test_a_test_send_refuses_a_weak_key_as_a_real_send_does(project, run, smtp_server, inbox, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "zq")
    result = run("send", ISSUE, "--test", "advisor@example.org")
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET is too weak" in result.stderr and MAKE_ONE in result.stderr
    assert inbox.recipients() == {}


def test_a_test_send_without_the_key_goes_but_says_its_link_will_not_work(
    project, run, smtp_server, inbox, monkeypatch
):
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = run("send", ISSUE, "--test", "advisor@example.org")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"advisor@example.org": 1}
    assert "warning:" in result.stderr
    assert "preview key" in result.stderr and "will not work" in result.stderr
    assert "NEWSLETTER_SECRET" in result.stderr and MAKE_ONE in result.stderr
    # And it is true: the link in the copy is signed with the preview key, not a real one.
    token = inbox.messages[0]["List-Unsubscribe"].split("t=", 1)[1].split(">", 1)[0]
    assert read_token(PREVIEW_SECRET, LIST_ID, token) == "advisor@example.org"


def test_a_test_send_with_a_strong_key_says_nothing_and_signs_with_it(project, run, smtp_server, inbox):
    result = run("send", ISSUE, "--test", "advisor@example.org")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    token = inbox.messages[0]["List-Unsubscribe"].split("t=", 1)[1].split(">", 1)[0]
    assert read_token(SECRET, LIST_ID, token) == "advisor@example.org"


def test_build_without_a_key_is_silent(project, run, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    result = run("build", ISSUE)
    assert result.exit_code == 0, result.output
    assert "NEWSLETTER_SECRET" not in result.stderr


@pytest.mark.parametrize("command", ["build", "dry-run"])
def test_build_and_dry_run_warn_of_a_weak_key_but_still_work(project, run, monkeypatch, command):
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret")
    if command == "build":
        result = run("build", ISSUE)
    else:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning: NEWSLETTER_SECRET is too weak" in result.stderr and MAKE_ONE in result.stderr
    assert "test-secret" not in result.output
