"""`inbox` against what a careless or hostile mailbox holds: pipes and devices among the messages, headers that
trip the bounce library's detectors, MIME nested too deep to parse, a Message-ID taken by another message, a subject
in encoded-words, a reply quoting someone's unsubscribe link, forged and unsigned bounces, auto-replies to return
paths, a Maildir that goes away while watched, and nonsense for --every."""

from __future__ import annotations

import base64
import email
import email.policy
import mailbox
import os
import re
import shutil
from email.header import Header
from pathlib import Path

import pytest

from newsletter.suppressions import SuppressionStore
from newsletter.unsubscribe import make_token

from .bounces import DATA, bounce_for, maildir_files, maildir_with, send_seed
from .support import SECRET, SEED, cli_watching, run_cli


def test_a_fifo_or_a_device_among_the_messages_is_left_alone_and_the_rest_is_read(project):
    path = maildir_with(project, [b"From: person@example.org\nSubject: hello\nMessage-ID: <p@x>\n\nHi!\n"])
    os.mkfifo(path / "new" / "1.fifo")  # opening it would wait for ever for a writer
    (path / "new" / "2.zero").symlink_to("/dev/zero")  # reading it would never end
    before = maildir_files(path)
    done = run_cli(project, "inbox", "--maildir", path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "1 read" in done.stdout and "1 left alone" in done.stdout
    assert "1.fifo left alone" in done.stderr and "named pipe" in done.stderr
    assert "2.zero left alone" in done.stderr and "not a regular file" in done.stderr
    assert maildir_files(path) == before


def test_a_message_that_trips_a_bounce_detector_prints_no_traceback(project):
    # An empty From makes one of flufl.bounce's detectors raise; it logs the traceback unless told not to.
    path = maildir_with(project, [b"From: \nSubject: Returned mail\nMessage-ID: <r@x>\n\nUser unknown\n"])
    done = run_cli(project, "inbox", "--maildir", path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "1 left alone" in done.stdout


@pytest.mark.parametrize("every", ["0", "-1", "nan", "inf", "1e308"])
def test_every_must_be_a_sensible_number_of_seconds(project, run, every):
    result = run("inbox", "--maildir", maildir_with(project, []), "--watch", "--every", every)
    assert result.exit_code in (1, 2)  # 2: Click's own usage error, for what its range check sees
    assert "--every" in result.output and "Traceback" not in result.output


def _nested(levels: int) -> bytes:
    """A message of `levels` multiparts, each the only part of the one around it."""
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n' for n in range(levels))
    closing = "".join(f"--b{n}--\n" for n in reversed(range(levels)))
    head = "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\nMessage-ID: <deep@x>\nMIME-Version: 1.0\n"
    return (head + opening + "Content-Type: text/plain\n\nUser unknown\n" + closing).encode()


def test_a_message_nested_a_thousand_levels_deep_is_left_alone_and_the_rest_is_read(project):
    path = maildir_with(project, [(DATA / "postfix-no-such-user.eml").read_bytes()])
    (path / "new" / "0.deep").write_bytes(_nested(1000))  # written as is: the stdlib cannot even parse it to add it
    for _ in range(2):  # the second run too: the message that stopped one run must not stop every later one
        done = run_cli(project, "inbox", "--maildir", path, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "message 0.deep left alone: its MIME parts are nested too deep to read" in done.stderr
        assert "1 left alone" in done.stdout
    assert maildir_files(path) == {"0.deep"}
    with SuppressionStore.open(project) as store:
        assert [d[1] for d in store.decisions()] == ["nosuchuser@example.net"]


def test_a_message_that_took_a_real_bounce_s_message_id_does_not_hide_it(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    real = bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown")
    # First comes a bounce for someone never mailed, under the Message-ID the real one will have.
    decoy = email.message_from_bytes((DATA / "postfix-no-such-user.eml").read_bytes(), policy=email.policy.compat32)
    decoy.replace_header("Message-ID", email.message_from_bytes(real)["Message-ID"])
    path = maildir_with(project, [decoy.as_bytes()])
    assert "1 bounce for addresses never mailed" in run("inbox", "--maildir", path).output
    mailbox.Maildir(path).add(real)
    result = run("inbox", "--maildir", path)
    assert "1 read, 1 hard bounce," in result.output and "recorded before" not in result.output
    with SuppressionStore.open(project) as store:
        assert store.get("bob@example.org") is not None


def test_one_message_cannot_fill_the_disk_with_evidence(project, run):
    """Each decision keeps the message's facts: a 200 KB From line and 200 addresses once wrote 80 MB."""
    block = "Final-Recipient: rfc822; u{}@example.net\nAction: failed\nStatus: 5.1.1\n\n"
    blocks = "".join(block.format(n) for n in range(200))
    huge = "x" * 200_000
    data = (
        f"From: MAILER-DAEMON@mx.example.net ({huge})\nSubject: Undelivered Mail\nMessage-ID: <{huge}@x>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"{blocks}Final-Recipient: rfc822; {huge}@example.net\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 {huge}\n\n--B--\n"
    ).encode()
    result = run("inbox", "--maildir", maildir_with(project, [data]))
    assert result.exit_code == 0, result.output
    assert "100 bounces for addresses never mailed" in result.output
    assert sum(f.stat().st_size for f in (project / "state").iterdir()) < 2 * 1024 * 1024


def test_a_mailed_unsubscribe_whose_subject_the_mail_program_encoded_is_read(project, run, monkeypatch):
    """Mail programs may send a subject as RFC 2047 encoded-words, quoted-printable or base64, split anywhere."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    tokens = {a: make_token(SECRET, "roundup.example.org", a, SEED) for a in ("cat@example.org", "dan@example.org")}
    quoted = Header(f"unsubscribe {tokens['cat@example.org']}", "utf-8").encode()  # two encoded-words, token split
    b64 = "=?utf-8?b?" + base64.b64encode(f"unsubscribe {tokens['dan@example.org']}".encode()).decode() + "?="
    made_up = "=?x-made-up?q?unsubscribe?="
    mails = [
        f"From: {who}@example.org\nTo: unsubscribe@example.org\nSubject: {subject}\nMessage-ID: <{who}@x>\n\n"
        for who, subject in (("cat", quoted), ("dan", b64), ("eve", made_up))
    ]
    assert "=?utf-8?q?" in quoted and "\n" in quoted
    result = run("inbox", "--maildir", maildir_with(project, [m.encode() for m in mails]))
    assert result.exit_code == 0, result.output
    assert "2 unsubscribes" in result.output and "1 left alone" in result.output
    with SuppressionStore.open(project) as store:
        assert {row.email for row in store.rows()} == {"cat@example.org", "dan@example.org"}


def test_a_reply_quoting_the_issue_is_no_unsubscribe_where_the_mailto_address_takes_replies(
    project, run, smtp_server, inbox
):
    site = project / "newsletter.yaml"
    configured = site.read_text(encoding="utf-8")
    site.write_text(
        configured.replace("unsubscribe_mailto: unsubscribe@example.org", "unsubscribe_mailto: hhomes@amnesty.ca")
    )
    assert "reply_to: hhomes@amnesty.ca" in configured
    send_seed(project, run, inbox)
    sent = {a: inbox.by_recipient(a) for a in ("bob@example.org", "cat@example.org")}
    text = {a: next(p for p in m.walk() if p.get_content_type() == "text/plain").get_content() for a, m in sent.items()}
    quoted = "\n".join("> " + line for line in text["bob@example.org"].splitlines())
    cat_token = re.search(r"\?t=(\S+)", text["cat@example.org"])[1]
    mails = [
        # bob's thanks, quoting the issue and so his unsubscribe link
        f"From: bob@example.org\nTo: hhomes@amnesty.ca\nSubject: Re: the roundup\n"
        f"In-Reply-To: {sent['bob@example.org']['Message-ID']}\nMessage-ID: <thanks@x>\n\nThank you!\n\n{quoted}\n",
        # cat's own message, her token pasted in its text
        f"From: cat@example.org\nTo: hhomes@amnesty.ca\nSubject: take me off\nMessage-ID: <off@x>\n\n{cat_token}\n",
    ]
    result = run("inbox", "--maildir", maildir_with(project, [m.encode() for m in mails]))
    assert result.exit_code == 0, result.output
    assert "1 unsubscribe," in result.output and "1 left alone" in result.output
    with SuppressionStore.open(project) as store:
        assert [row.email for row in store.rows()] == ["cat@example.org"]


def _send_with_return_paths(project: Path, run, inbox) -> dict[str, str]:
    """Send the seed issue with a bounce_address: each recipient's return path."""
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + "bounce_address: bounces@example.org\n", encoding="utf-8")
    send_seed(project, run, inbox)
    return {rcpts[0]: mail_from for mail_from, rcpts in inbox.envelopes}


def test_with_a_bounce_address_only_a_signed_return_path_suppresses(project, run, smtp_server, inbox, monkeypatch):
    return_paths = _send_with_return_paths(project, run, inbox)

    def bounce(failed: str, delivered_to: str) -> bytes:
        data = bounce_for(inbox.by_recipient(failed), failed, "5.1.1", "User unknown")
        return data.replace(b"To: roundup@example.org\n", f"Delivered-To: {delivered_to}\n".encode())

    local, domain = return_paths["cat@example.org"].split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain  # the right shape, the wrong signature
    mails = [
        bounce("bob@example.org", return_paths["bob@example.org"]),  # the real thing
        bounce("cat@example.org", forged),
        bounce("dan@example.org", "bounces@example.org"),  # no token, but dan's own Message-ID quoted
        bounce("dan@example.org", return_paths["ann@example.org"]),  # ann's, whatever address the DSN names
    ]
    path = maildir_with(project, mails)
    monkeypatch.delenv("NEWSLETTER_SECRET")
    refused = run("inbox", "--maildir", path)
    assert refused.exit_code == 1 and refused.output.startswith("error: set NEWSLETTER_SECRET: the key that signed")
    assert len(maildir_files(path)) == 4

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    result = run("inbox", "--maildir", path)
    assert result.exit_code == 0, result.output
    assert "4 read, 2 hard bounces," in result.output and "2 bounces not to a signed return path" in result.output
    with SuppressionStore.open(project) as store:
        assert sorted(row.email for row in store.rows()) == ["ann@example.org", "bob@example.org"]
        assert sorted((d[1], d[2]) for d in store.decisions()) == [
            ("ann@example.org", "hard"),
            ("bob@example.org", "hard"),
            ("cat@example.org", "unsigned"),
            ("dan@example.org", "unsigned"),
        ]


def test_an_auto_reply_to_a_return_path_is_never_a_bounce(project, run, smtp_server, inbox):
    """A vacation responder answers the return path (RFC 3834); its text may trip a bounce detector's heuristics."""
    return_paths = _send_with_return_paths(project, run, inbox)
    away = (
        f"From: Bob <bob@example.org>\nTo: {return_paths['bob@example.org']}\nSubject: Away until Monday\n"
        "Auto-Submitted: auto-replied\nMessage-ID: <away@x>\n\nI am away. The following addresses had my mail "
        "while I am:\n\n  deputy@example.org\n\nTranscript of session follows.\n"
    )
    result = run("inbox", "--maildir", maildir_with(project, [away.encode()]))
    assert "0 hard bounces, 0 soft, 0 unsubscribes, 1 auto-reply ignored" in result.output
    with SuppressionStore.open(project) as store:
        assert list(store.rows()) == []


def test_watch_waits_for_a_maildir_that_went_away_and_reads_it_when_it_is_back(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    path = maildir_with(
        project, [bounce_for(inbox.by_recipient("dan@example.org"), "dan@example.org", "5.1.1", "Unknown")]
    )
    with cli_watching(project, "inbox", "--maildir", path, "--watch", "--every", "0.2") as lines:
        lines.until(r"^dan@example\.org ")  # the Maildir was read
        shutil.rmtree(path)  # deleted, say to be restored from a backup
        lines.until(r"^inbox: Maildir: .*; trying again in 0\.2 s$")
        box = mailbox.Maildir(path, create=True)
        box.add(bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown"))
        assert lines.until(r"bob@example\.org").string.split() == ["bob@example.org", "hard", SEED]
    # A mailbox that was never there is a typo, not a wait.
    never = run_cli(project, "inbox", "--maildir", project / "Maildri", "--watch", timeout=30)
    assert never.returncode == 1 and "Maildri: is not a Maildir" in never.stderr
