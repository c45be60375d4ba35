"""`newsletter inbox`: bounces suppress who cannot be mailed, auto-replies are ignored, the rest is left alone.

The samples in tests/data/bounces/ are written from published examples of
each sender's bounces (Postfix, Exim, Gmail, Outlook/Exchange) and
auto-replies, but for postfix-pipe-user-unknown.eml, which a real Postfix
wrote (test_inbox_postfix.py); the end-to-end tests send the seed issue to
a real SMTP server first, so the ledger knows whom it mailed.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from pathlib import Path

import pytest

from newsletter.inbox import Recipients, classify
from newsletter.project import open_project
from newsletter.suppressions import SuppressionStore, Why

from .bounces import ADDRESSES, DATA, ISSUE, bounce_for, maildir_files, maildir_with, send_seed
from .support import SECRET, SEED, cli_watching, write_issue, write_list


def _classify(project: Path, name: str):
    message = email.message_from_bytes((DATA / name).read_bytes(), policy=email.policy.compat32)
    site = open_project().site
    return classify(message, site, Recipients(project), SECRET)


@pytest.mark.parametrize(
    ("sample", "bounce", "failed", "status", "said"),
    [
        ("postfix-no-such-user.eml", "hard", "nosuchuser@example.net", "5.1.1", "5.1.1"),
        ("postfix-mailbox-full.eml", "soft", "fullbox@example.net", "4.2.2", "4.2.2"),
        ("postfix-pipe-user-unknown.eml", "hard", "bob@example.com", "5.1.1", "user unknown"),
        ("exim-no-such-user.eml", "hard", "gone@example.com", None, None),
        ("gmail-no-such-user.eml", "hard", "nobody.here@gmail.com", "5.1.1", "5.1.1"),
        ("outlook-recipient-not-found.eml", "hard", "pat.left@contoso.com", "5.1.10", "5.1.10"),
    ],
)
def test_each_sample_bounce_names_the_failed_address_and_its_kind(project, sample, bounce, failed, status, said):
    (decision,) = _classify(project, sample)
    # Nobody was mailed in this project: a bounce is recorded as evidence only.
    assert decision.kind == "unknown"
    assert decision.evidence["bounce"] == bounce
    assert decision.evidence["failed"] == failed
    assert decision.evidence["status"] == status
    if said:
        assert said in decision.evidence["diagnostic"]


def test_postfix_s_own_bounce_to_a_return_path_is_that_recipient_s(project, run, smtp_server, inbox):
    """postfix-pipe-user-unknown.eml is a DSN the real Postfix of test_inbox_postfix.py wrote, for the seed issue
    sent with the test key to this list, in this order: its return path names ledger row 3, bob."""
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + "bounce_address: bounces@example.org\n", encoding="utf-8")
    addresses = ["ann@example.com", "cat@example.net", "bob@example.com", "dan@example.net"]
    result = run("send", ISSUE, "--to", write_list(project, ["email", *addresses]), "--yes")
    assert result.exit_code == 0, result.output
    (decision,) = _classify(project, "postfix-pipe-user-unknown.eml")
    assert (decision.kind, decision.email, decision.issue) == ("hard", "bob@example.com", SEED)
    assert decision.evidence["matched"] == "return path"
    assert (decision.evidence["status"], decision.evidence["diagnostic"]) == ("5.1.1", "x-unix; user unknown")


@pytest.mark.parametrize("sample", ["vacation-reply.eml", "auto-submitted-reply.eml"])
def test_auto_replies_are_never_bounces(project, sample):
    assert [d.kind for d in _classify(project, sample)] == ["auto-reply"]


def test_a_person_s_reply_is_left_alone(project):
    assert _classify(project, "human-reply.eml") is None


# -- end to end ------------------------------------------------------------------


def test_inbox_suppresses_two_hard_bounces_and_the_next_issue_skips_exactly_them(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    human = (DATA / "human-reply.eml").read_bytes()
    vacation = (DATA / "vacation-reply.eml").read_bytes()
    path = maildir_with(
        project,
        [
            bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown"),
            bounce_for(inbox.by_recipient("dan@example.org"), "dan@example.org", "5.1.2", "Domain not found"),
            human,
            vacation,
        ],
    )
    before = maildir_files(path)
    result = run("inbox", "--maildir", path)
    assert result.exit_code == 0, result.output
    assert "inbox: 4 read, 2 hard bounces, 0 soft, 0 unsubscribes, 1 auto-reply ignored, 1 left alone" in result.output

    with SuppressionStore.open(project) as store:
        bob = store.get("bob@example.org")
        assert bob is not None and bob.why == Why.BOUNCE and bob.issue == SEED
        assert bob.evidence["status"] == "5.1.1" and "User unknown" in bob.evidence["diagnostic"]
        assert bob.evidence["message_id"] and bob.evidence["date"]
        assert store.get("dan@example.org") is not None
        assert store.get("ann@example.org") is None and store.get("cat@example.org") is None
        decisions = store.decisions()

    # The person's reply stays where it was, unread; the recognised ones moved, unread still.
    left = maildir_files(path)
    assert len(left) == 1 and left < before
    assert (path / "new" / next(iter(left))).read_bytes().replace(b"\r\n", b"\n") == human.replace(b"\r\n", b"\n")
    assert len(maildir_files(path / ".Processed")) == 3

    again = run("inbox", "--maildir", path)
    assert "1 read" in again.output and "0 hard bounces" in again.output
    with SuppressionStore.open(project) as store:
        assert store.decisions() == decisions

    inbox.envelopes.clear()
    second = write_issue(
        project, (project / ISSUE).read_text(encoding="utf-8").replace(f"id: {SEED}", "id: second", 1), "second.yaml"
    )
    result = run("send", second, "--to", write_list(project, ["email", *ADDRESSES]), "--yes")
    assert result.exit_code == 0, result.output
    assert "skipped: 2 suppressed" in result.output
    assert set(inbox.recipients()) == {"ann@example.org", "cat@example.org"}


def test_an_mbox_is_never_changed_and_a_rerun_records_nothing_twice(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    path = project / "mbox"
    box = mailbox.mbox(path)
    box.add(bounce_for(inbox.by_recipient("cat@example.org"), "cat@example.org", "4.2.2", "Mailbox full"))
    box.add((DATA / "human-reply.eml").read_bytes())
    box.close()
    before = path.read_bytes()
    first = run("inbox", "--mbox", path)
    assert "2 read, 0 hard bounces, 1 soft" in first.output and "1 left alone" in first.output
    second = run("inbox", "--mbox", path)
    assert "1 recorded before" in second.output and "0 soft" in second.output
    assert path.read_bytes() == before
    with SuppressionStore.open(project) as store:
        assert store.score("cat@example.org") == 0.5
        assert store.get("cat@example.org") is None  # one soft bounce is below the threshold
        assert len(store.decisions()) == 1


def test_soft_bounces_count_once_a_day_and_suppress_at_the_threshold(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    sent = inbox.by_recipient("ann@example.org")
    messages = []
    for n, day in enumerate(["10", "10", "11", "12", "13", "14"]):
        data = bounce_for(sent, "ann@example.org", "4.2.2", "Mailbox full").decode()
        data = data.replace("Mon, 10 May 2021", f"{day} May 2021").replace("Message-Id: <", f"Message-Id: <{n}.")
        messages.append(data.encode())
    path = maildir_with(project, messages[:5])
    run("inbox", "--maildir", path)
    with SuppressionStore.open(project) as store:
        assert store.score("ann@example.org") == 2.0  # four days, the 10th once
        assert store.get("ann@example.org") is None
    mailbox.Maildir(path).add(messages[5])
    run("inbox", "--maildir", path)
    with SuppressionStore.open(project) as store:
        assert store.score("ann@example.org") == 2.5
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text(encoding="utf-8") + "inbox:\n  soft_bounce_threshold: 2.5\n",
        encoding="utf-8",
    )
    mailbox.Maildir(path).add(messages[5].replace(b"14 May", b"15 May").replace(b"<5.", b"<6."))
    run("inbox", "--maildir", path)
    with SuppressionStore.open(project) as store:
        assert store.get("ann@example.org") is not None


def test_a_bounce_for_an_address_never_mailed_suppresses_nothing(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    path = maildir_with(project, [(DATA / "postfix-no-such-user.eml").read_bytes()])
    result = run("inbox", "--maildir", path)
    assert "1 bounce for addresses never mailed" in result.output
    with SuppressionStore.open(project) as store:
        assert store.get("nosuchuser@example.net") is None
        assert [d[2] for d in store.decisions()] == ["unknown"]


def test_a_mailed_unsubscribe_with_a_genuine_token_suppresses(project, run, smtp_server, inbox, monkeypatch):
    from newsletter.unsubscribe import make_token

    token = make_token(SECRET, "roundup.example.org", "bob@example.org", SEED)
    forged = make_token("another key entirely, long enough to be a key!!", "roundup.example.org", "ann@example.org")
    mails = [
        f"From: bob@example.org\nTo: unsubscribe@example.org\nSubject: unsubscribe {token}\nMessage-ID: <u1@x>\n\n",
        f"From: ann@example.org\nTo: unsubscribe@example.org\nSubject: unsubscribe {forged}\nMessage-ID: <u2@x>\n\n\n",
    ]
    path = maildir_with(project, [m.encode() for m in mails])
    result = run("inbox", "--maildir", path)
    assert "1 unsubscribe," in result.output and "1 left alone" in result.output
    with SuppressionStore.open(project) as store:
        bob = store.get("bob@example.org")
        assert bob is not None and bob.why == Why.MAILTO and bob.issue == SEED
        assert store.get("ann@example.org") is None


def test_bad_input_is_left_alone_and_a_missing_mailbox_is_a_clear_message(project, run, smtp_server, inbox):
    broken = (
        b'From: MAILER-DAEMON@x\nSubject: Undelivered Mail\nContent-Type: multipart/report; boundary="Z"\n\n'
        b"--Z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recip"
    )
    huge = b"From: someone@example.org\nSubject: big\nMessage-ID: <big@x>\n\n" + b"x" * (20 * 1024 * 1024)
    path = maildir_with(project, [broken, huge, b"\x00\xff not a message at all"])
    before = maildir_files(path)
    result = run("inbox", "--maildir", path)
    assert result.exit_code == 0, result.output
    assert "3 read" in result.output and "3 left alone" in result.output
    assert maildir_files(path) == before
    with SuppressionStore.open(project) as store:
        assert store.decisions() == [] and list(store.rows()) == []
    missing = run("inbox", "--maildir", project / "nowhere")
    assert missing.exit_code == 1 and "is not a Maildir" in missing.output
    assert "Traceback" not in missing.output


def test_a_bounce_to_a_return_path_is_that_recipient_s_however_mangled_the_dsn(project, run, smtp_server, inbox):
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + "bounce_address: bounces@example.org\n", encoding="utf-8")
    send_seed(project, run, inbox)
    return_paths = {rcpts[0]: mail_from for mail_from, rcpts in inbox.envelopes}
    # The DSN names an address we never wrote to (a forward) and quotes no Message-ID; only the
    # address it was delivered to, bob's return path, says whose it is.
    mangled = (
        bounce_for(inbox.by_recipient("bob@example.org"), "old-bob@forward.example.net", "5.1.1", "User unknown")
        .replace(b"To: roundup@example.org\n", f"To: {return_paths['bob@example.org']}\n".encode())
        .replace(inbox.by_recipient("bob@example.org")["Message-ID"].encode(), b"<lost@mx.example.net>")
    )
    token = return_paths["cat@example.org"].split("+", 1)[1].split("@")[0]
    forged = mangled.replace(
        return_paths["bob@example.org"].encode(),
        return_paths["cat@example.org"].replace(token, token[:-1] + ("a" if token[-1] != "a" else "b")).encode(),
    ).replace(b"<bounce.", b"<forged.")
    result = run("inbox", "--maildir", maildir_with(project, [mangled, forged]))
    assert result.exit_code == 0, result.output
    with SuppressionStore.open(project) as store:
        bob = store.get("bob@example.org")
        assert bob is not None and bob.why == Why.BOUNCE and bob.issue == SEED
        assert bob.evidence["matched"] == "return path" and bob.evidence["status"] == "5.1.1"
        assert store.get("cat@example.org") is None  # a return path with one character changed is no one's
        assert store.get("old-bob@forward.example.net") is None


def test_status_shows_the_issue_s_bounces_unsubscribes_and_bounce_rate(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    path = maildir_with(
        project,
        [
            bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown"),
            bounce_for(inbox.by_recipient("dan@example.org"), "dan@example.org", "5.1.2", "Domain not found"),
            bounce_for(inbox.by_recipient("cat@example.org"), "cat@example.org", "4.2.2", "Mailbox full"),
        ],
    )
    assert run("inbox", "--maildir", path).exit_code == 0
    with SuppressionStore.open(project) as store:
        store.add("ann@example.org", Why.ONE_CLICK, issue=SEED)
        store.add("eve@example.org", Why.PAGE, issue="another-issue")  # another issue's: not this one's

    result = run("status", ISSUE)
    assert result.exit_code == 0, result.output
    assert "bounces: 2 hard, 1 soft (bounce rate 75.0% of 4 sent)" in result.output
    assert "unsubscribes: 1 one-click, 0 page, 0 mailto" in result.output


def test_watch_prints_each_decision_as_it_comes_and_stops_on_ctrl_c(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    path = maildir_with(project, [])
    with cli_watching(project, "inbox", "--maildir", path, "--watch", "--every", "0.2") as lines:
        lines.until(r"^inbox: watching .* every 0\.2 s")
        # The bounce arrives after the watch began: it is read on a later round, not the first.
        mailbox.Maildir(path).add(
            bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown")
        )
        found = lines.until(r"bob@example\.org")
        assert found.string.split() == ["bob@example.org", "hard", SEED]
        with SuppressionStore.open(project) as store:
            assert store.get("bob@example.org") is not None


def test_suppressions_show_says_on_what_evidence_each_address_was_suppressed(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    # What a server says ends up on the terminal: an escape sequence in it is shown, never obeyed.
    hard = bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User \x1b[2J unknown")
    soft = bounce_for(inbox.by_recipient("cat@example.org"), "cat@example.org", "4.2.2", "Mailbox full")
    assert run("inbox", "--maildir", maildir_with(project, [hard, soft])).exit_code == 0

    result = run("suppressions", "show", "BOB@example.org", "cat@example.org", "ann@example.org")
    assert result.exit_code == 0, result.output
    bob, bob_why, cat, cat_score, cat_why, ann = result.output.splitlines()
    assert re.fullmatch(rf"bob@example\.org  suppressed \S+Z  bounce  {SEED}", bob)
    assert bob_why == (
        f"  hard  {SEED}  5.1.1 smtp; 550 5.1.1 User \\x1b[2J unknown; message <bounce.bob@example.org.5.1.1"
        "@mx.example.net> of Mon, 10 May 2021 09:12:44 +0000 from MAILER-DAEMON@mx.example.net (Mail Delivery System)"
    )
    assert (cat, cat_score) == ("cat@example.org  not suppressed", "  bounce score 0.5 (suppressed at 3)")
    assert cat_why.startswith(f"  soft  {SEED}  4.2.2 smtp; 550 4.2.2 Mailbox full; message <bounce.cat@")
    assert ann == "ann@example.org  not suppressed"
