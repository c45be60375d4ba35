"""Real bounces, not hand-written ones: Postfix itself says who does not exist, and `inbox` believes it.

The seed issue goes through a real Postfix (tests/postfix.py) to a list of
which half has a mailbox there. Postfix accepts every recipient, finds at
delivery that two do not exist, and writes its own DSNs to the envelope
sender: each recipient's signed return path (VERP) with `bounce_address`,
the From address without.
"""

from __future__ import annotations

import csv
import io
import mailbox

from newsletter.suppressions import SuppressionStore
from newsletter.verp import read_return_path

from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"
BOUNCES = "bounces@example.org"
FROM = "roundup@example.org"  # the seed project's From address
EXISTING = ["ann@example.com", "cat@example.net"]
MISSING = ["bob@example.com", "dan@example.net"]


def _send_and_collect_dsns(project, run, postfix, envelope_sender: str) -> list[mailbox.MaildirMessage]:
    """Send the seed issue through `postfix` to everyone; Postfix's DSNs, once both are delivered."""
    for address in [*EXISTING, envelope_sender]:
        postfix.mailbox(address)
    sent = run("send", ISSUE, "--to", write_list(project, ["email", *EXISTING, *MISSING]), "--yes")
    assert sent.exit_code == 0, sent.output  # Postfix accepted everyone: it learns who is missing only at delivery
    for address in EXISTING:
        (delivered,) = postfix.wait_for(address, 1)
        assert b"Subject: Crisis and Tactical Round Up" in delivered
    dsns = [mailbox.MaildirMessage(m) for m in postfix.wait_for(envelope_sender, len(MISSING))]
    postfix.wait_until_idle()  # nothing deferred, nothing more to come
    assert {m["From"] for m in dsns} == {"Mail Delivery System <MAILER-DAEMON@mx.postfix.test>"}
    return dsns


def _suppressed(run) -> list[tuple[str, str, str]]:
    """(address, why, issue) of each row `newsletter suppressions list` shows, sorted."""
    listed = run("suppressions", "list")
    assert listed.exit_code == 0, listed.output
    return sorted((row[0], row[2], row[3]) for row in (line.split() for line in listed.stdout.splitlines()) if row)


def test_postfix_s_own_bounces_suppress_exactly_the_missing_addresses(project, run, postfix_relay):
    postfix = postfix_relay
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + f"bounce_address: {BOUNCES}\n", encoding="utf-8")
    dsns = _send_and_collect_dsns(project, run, postfix, BOUNCES)
    # each one delivered to the return path of the message it returns, not to bounces@ itself
    assert all(read_return_path(SECRET, m["Delivered-To"]) for m in dsns)

    bounce_maildir = postfix.mailbox(BOUNCES)
    result = run("inbox", "--maildir", bounce_maildir)
    assert result.exit_code == 0, result.output
    assert "inbox: 2 read, 2 hard bounces, 0 soft, 0 unsubscribes, 0 auto-replies ignored, 0 left alone" in (
        result.output
    )

    assert _suppressed(run) == [(address, "bounce", SEED) for address in MISSING]
    exported = run("suppressions", "export")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted((row["email"], row["why"], row["issue"]) for row in rows) == [(a, "bounce", SEED) for a in MISSING]
    with SuppressionStore.open(project) as store:
        for address in MISSING:
            evidence = store.get(address).evidence
            assert evidence["matched"] == "return path"
            assert (evidence["status"], evidence["diagnostic"]) == ("5.1.1", "x-unix; user unknown")

    # Both DSNs recognised and moved out of the way, unread still; nothing left behind.
    box = mailbox.Maildir(bounce_maildir, create=False)
    assert len(box) == 0
    processed = box.get_folder("Processed")
    assert len(processed) == len(MISSING)
    assert all(m.get_subdir() == "new" and "S" not in m.get_flags() for m in processed)

    status = run("status", ISSUE)
    assert status.exit_code == 0, status.output
    assert "bounces: 2 hard, 0 soft (bounce rate 50.0% of 4 sent)" in status.output


def test_without_a_bounce_address_postfix_s_bounces_are_matched_by_the_message_they_return(project, run, postfix_relay):
    # The DSNs come back to the From address, and only the returned message's headers say whose they are.
    dsns = _send_and_collect_dsns(project, run, postfix_relay, FROM)
    assert {m["Delivered-To"] for m in dsns} == {FROM}
    result = run("inbox", "--maildir", postfix_relay.mailbox(FROM))
    assert result.exit_code == 0, result.output
    assert "inbox: 2 read, 2 hard bounces," in result.output and "0 left alone" in result.output
    assert _suppressed(run) == [(address, "bounce", SEED) for address in MISSING]
    assert "bounces: 2 hard, 0 soft (bounce rate 50.0% of 4 sent)" in run("status", ISSUE).output
