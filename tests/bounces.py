"""Bounces for the inbox tests: the seed sent to four people, Postfix-shaped DSNs of its messages, and
Maildirs to put them in."""

from __future__ import annotations

import email.message
import mailbox
from pathlib import Path

from .support import SEED, write_list

DATA = Path(__file__).parent / "data" / "bounces"
ISSUE = f"issues/{SEED}.yaml"


ADDRESSES = ["ann@example.org", "bob@example.org", "cat@example.org", "dan@example.org"]


def send_seed(project: Path, run, inbox) -> None:
    result = run("send", ISSUE, "--to", write_list(project, ["email", *ADDRESSES]), "--yes")
    assert result.exit_code == 0, result.output
    assert set(inbox.recipients()) == set(ADDRESSES)


def bounce_for(sent: email.message.Message, failed: str, status: str, text: str) -> bytes:
    """A Postfix-shaped DSN for the message `sent`, quoting its headers."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        "To: roundup@example.org\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Mon, 10 May 2021 09:12:44 +0000\n"
        f"Message-Id: <bounce.{failed}.{status}@mx.example.net>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {failed}\nAction: failed\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} {text}\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        f"To: {failed}\nMessage-ID: {sent['Message-ID']}\n\n"
        "--B--\n"
    ).encode()


def maildir_with(project: Path, messages: list[bytes]) -> Path:
    path = project / "Maildir"
    box = mailbox.Maildir(path, create=True)
    for data in messages:
        box.add(mailbox.MaildirMessage(data))  # in new/: unread
    return path


def maildir_files(folder: Path) -> set[str]:
    return {p.name for p in (folder / "new").iterdir()} | {p.name for p in (folder / "cur").iterdir()}
