"""Messages per second of `newsletter inbox --maildir`, beside a standard-library baseline; peak memory.

Usage: python benchmarks/inbox_throughput.py [BOUNCES]   (default 10000)

In a temporary copy of the project, `newsletter send` mails BOUNCES
recipients through the discarding sink (benchmarks/smtp_sink.py), so the
ledger knows whom each bounce is for. Then BOUNCES Postfix-shaped DSNs go
into a Maildir, half hard (5.1.1, no such user) and half soft (4.2.2,
mailbox full), each quoting the Message-ID of the message it returns.
`newsletter inbox --maildir` is timed as a whole process (start-up, the
ledger read, detection, the suppression writes, moving each message).

The baseline, measured in the same run on the same Maildir, is the least
any reader must do: list it with `mailbox.Maildir` and parse every message
with `email.message_from_bytes`. On a shared machine the ratio means more
than the raw figure. A second `inbox` run over the same Maildir must find
nothing left to do: every message was acted on and moved once.
"""

from __future__ import annotations

import email
import mailbox
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from send_throughput import SEED, make_project, run_timed, start_sink

from newsletter.ledger import mailed
from newsletter.message import message_id_digest
from newsletter.state import ledger_path

DOMAIN = "example.org"  # the domain of `from:` in newsletter.yaml, as Message-IDs carry it


def send(project: Path, port: int, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "newsletter", "send", f"issues/{SEED}.yaml", "--to", "list.csv", "--yes"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"newsletter send failed:\n{done.stdout}{done.stderr}")


def bounce(identity: str, failed: str, n: int, hard: bool) -> bytes:
    """A Postfix-shaped DSN returning the message `identity` sent to `failed` (as tests/test_inbox.py makes)."""
    status, text = ("5.1.1", "<{0}>: Recipient address rejected: User unknown") if hard else ("4.2.2", "Mailbox full")
    code = 550 if hard else 452
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", identity).strip("-.") or "issue"
    sent_id = f"<{readable}.{message_id_digest(identity, failed)}@{DOMAIN}>"
    return (
        "Return-Path: <>\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        "To: roundup@example.org\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Mon, 10 May 2021 09:12:44 +0000\n"
        f"Message-Id: <bounce.{n}.{status}@mx.example.net>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is the mail system at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"<{failed}>: host mx.example.net said: {code} {status} {text.format(failed)}\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\nArrival-Date: Mon, 10 May 2021 09:12:40 +0000\n\n"
        f"Final-Recipient: rfc822; {failed}\nOriginal-Recipient: rfc822; {failed}\n"
        f"Action: {'failed' if hard else 'delayed'}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {code} {status} {text.format(failed)}\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        "From: Amnesty Crisis and Tactical Team <roundup@example.org>\n"
        f"To: {failed}\nSubject: Spring solidarity\nMessage-ID: {sent_id}\n\n"
        "--B--\n"
    ).encode()


def fill_maildir(project: Path, count: int) -> Path:
    path = project / "Maildir"
    box = mailbox.Maildir(path, create=True)
    sent = sorted((address, issue) for _, issue, address in mailed(ledger_path(project)))
    assert len(sent) == count, f"the ledger records {len(sent)} messages sent, not {count}"
    for n, (address, issue) in enumerate(sent):
        box.add(mailbox.MaildirMessage(bounce(issue, address, n, hard=n % 2 == 0)))  # in new/: unread
    return path


def baseline(path: Path) -> tuple[float, int]:
    """Seconds to list the Maildir and parse every message with the standard library alone, and how many."""
    start = time.perf_counter()
    box = mailbox.Maildir(path, create=False)
    count = 0
    for key in box.iterkeys():
        message = email.message_from_bytes(box.get_bytes(key))
        count += message["Message-Id"] is not None
    return time.perf_counter() - start, count


def inbox(project: Path, path: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds for the whole process, its peak RSS in KB, its summary line)."""
    command = [sys.executable, "-m", "newsletter", "inbox", "--maildir", str(path)]
    seconds, peak, output = run_timed(command, project, env)
    return seconds, peak, output.strip().splitlines()[-1]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    sink, port = start_sink()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
        ),
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SECRET=secrets.token_urlsafe(32),  # a weak key is refused
    )
    try:
        project = make_project(count)
        send(project, port, env)
    finally:
        sink.terminate()
    path = fill_maildir(project, count)
    size = sum(p.stat().st_size for p in (path / "new").iterdir())
    raw, parsed = baseline(path)
    assert parsed == count
    whole, rss, line = inbox(project, path, env)
    again, _, again_line = inbox(project, path, env)
    hard, soft = count // 2 + count % 2, count // 2
    print(f"{count:,} bounces ({hard:,} hard, {soft:,} soft), {size / count / 1024:.1f} KB each, {os.cpu_count()} CPUs")
    print(f"  baseline, mailbox.Maildir + email.message_from_bytes: {count / raw:8.0f} msg/s")
    print(
        f"  newsletter inbox --maildir, whole process:            {count / whole:8.0f} msg/s  "
        f"({raw / whole:.2f} of baseline, {whole:.1f} s)"
    )
    print(f"  newsletter inbox, peak RSS:                           {rss / 1024:8.1f} MB")
    print(f"  first run:  {line}")
    print(f"  rerun ({again:.2f} s): {again_line}")
    shutil.rmtree(project)


if __name__ == "__main__":
    main()
