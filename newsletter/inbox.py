"""`newsletter inbox`: read the bounces and mailed unsubscribes that come back, once, and act on them.

Each message of a Maildir, an mbox or an IMAP folder (`imap`) is one of:

- a bounce: one sent to our signed return path (VERP, `bounce_address`) is
  that recipient's and that issue's, whatever the DSN names or fails to name;
  otherwise `flufl.bounce` (GNU Mailman's detectors, which know the many
  dialects of delivery failure) names the failed addresses; the RFC 3464
  `message/delivery-status` part, when there is one, gives each its status
  code and diagnostic text. 5.x.x is hard (no such user, no such domain) and
  suppresses at once; 4.x.x is soft (mailbox full, greylisted) and adds to
  the address's score, at most once a day, suppressing once it reaches
  `inbox.soft_bounce_threshold`. The issue is found from the original
  Message-ID the bounce quotes (the send makes it from the issue and the
  recipient). A bounce for an address the ledger never mailed is recorded
  (kind `unknown`) and suppresses nothing: anyone can send a bounce naming
  anyone, and an address we never wrote to cannot tell us about our list;
  but if the quoted Message-ID names whom we mailed (a forward that fails),
  that recipient is the one bounced. With `bounce_address` set, every
  message of a send went out with its own signed return path: a bounce that
  did not come back to one (a made-up token, or none) is recorded (kind
  `unsigned`) and suppresses nothing, and the key is required;
- an auto-reply (out of office, vacation): recorded, ignored, never a bounce;
- an unsubscribe mailed to `unsubscribe_mailto` carrying a token signed with
  NEWSLETTER_SECRET: that address is suppressed;
- anything else: left exactly where it is, unread, and not recorded.

Every decision is recorded with its evidence in the suppression store,
keyed by the message's Message-ID and a digest of it (`message_key`),
before the message is moved, so a rerun (or an mbox, which is never
changed) records nothing twice. Only recognised, recorded messages are
moved to `inbox.processed_folder`, unread still (a Maildir's by renaming
the file, an IMAP folder's by MOVE: never a copy left behind, never lost);
one `Source` interface hides which it is.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.message
import email.policy
import email.utils
import hashlib
import logging
import mailbox
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from flufl.bounce import all_failures

from . import verp
from .errors import NewsletterError, Problem
from .files import open_regular
from .ledger import mailed
from .message import message_id_digest
from .model import Site
from .state import ledger_path
from .subscribers import address_key
from .suppressions import Decision, SuppressionStore
from .unsubscribe import read_signed, require_secret, secret_from_env

# flufl.bounce logs a traceback for every detector that trips over a malformed message; the message is then
# simply not that detector's kind, which the summary already says.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())
logging.getLogger("flufl.bounce").propagate = False

# Only the start of a message is read: a DSN's report and delivery-status come before the returned message,
# and a 20 MB bounce must not take 20 MB (or more, parsed) to classify.
READ_LIMIT = 2 * 1024 * 1024
# What one message can make the store keep. Each decision keeps the message's facts, and a message can name
# thousands of addresses: unbounded, a 2 MB message could write gigabytes. We send one message per recipient, so a
# bounce of ours names one address, or a few where it was forwarded; no address is longer than 254 characters.
MAX_ADDRESSES = 100
EVIDENCE_CHARS = 500
_LONGEST_ADDRESS = 254

_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|vacation|"
    r"abwesenheitsnotiz|r[ée]ponse automatique)",
    re.IGNORECASE,
)
READS_RETURN_PATHS = "signed the return paths (bounce_address) that bounces come back to"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,1024}\.[A-Za-z0-9_-]{24}(?![A-Za-z0-9_-])")
_ORIGINAL_ID = re.compile(r"<[^<>\s]+\.([0-9a-f]{32})@[^<>\s]+>")


class MailboxGone(NewsletterError):
    """A Maildir or an mbox that is not there, or went away while read: deleted, or being made again."""


@dataclass
class Summary:
    read: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    already: int = 0
    left: int = 0
    moved: int = 0
    notes: list[str] = field(default_factory=list)

    def gone_before_move(self, key: str) -> None:
        self.notes.append(f"message {key} went away before it could be moved; its decision is recorded")

    def line(self) -> str:
        k = self.kinds
        parts = [
            f"{self.read} read",
            f"{k['hard']} hard bounce{'s' if k['hard'] != 1 else ''}",
            f"{k['soft']} soft",
            f"{k['mailto']} unsubscribe{'s' if k['mailto'] != 1 else ''}",
            f"{k['auto-reply']} auto-repl{'ies' if k['auto-reply'] != 1 else 'y'} ignored",
        ]
        if k["unknown"]:
            parts.append(f"{k['unknown']} bounce{'s' if k['unknown'] != 1 else ''} for addresses never mailed")
        if k["unsigned"]:
            parts.append(f"{k['unsigned']} bounce{'s' if k['unsigned'] != 1 else ''} not to a signed return path")
        if self.already:
            parts.append(f"{self.already} recorded before")
        parts.append(f"{self.left} left alone")
        return "inbox: " + ", ".join(parts)


class Recipients:
    """Whom the ledger mailed, read once and only when a bounce needs it."""

    def __init__(self, root: Path) -> None:
        self._path = ledger_path(root)
        self._by_digest: dict[str, tuple[str, str]] | None = None
        self._addresses: set[str] = set()
        self._by_row: dict[int, tuple[str, str]] = {}

    def _load(self) -> dict[str, tuple[str, str]]:
        if self._by_digest is None:
            self._by_digest = {}
            for row_id, issue, address in mailed(self._path):
                self._by_digest[message_id_digest(issue, address)] = (issue, address)
                self._addresses.add(address_key(address))
                self._by_row[row_id] = (address, issue)
        return self._by_digest

    def recipient(self, row_id: int) -> tuple[str, str] | None:
        """(email, issue) of a ledger row whose message went out: what a return path refers to."""
        self._load()
        return self._by_row.get(row_id)

    def by_return_path(self, message: email.message.Message, secret: str | None) -> tuple[str, str] | None:
        """(issue, email) that the address this message was sent to stands for, when it is one of our signed
        return paths (VERP): the one match a mangled DSN cannot spoil, and a forged one cannot make."""
        if not secret:
            return None
        for value in _headers(message, *RETURN_PATH_HEADERS):
            for _, address in email.utils.getaddresses([value]):
                found = verp.recipient(self, secret, address)
                if found is not None:
                    return found[1], found[0]
        return None

    def by_message_id(self, text: str) -> tuple[str, str] | None:
        found = self._load()
        for digest in _ORIGINAL_ID.findall(text):
            if digest in found:
                return found[digest]
        return None

    def mailed(self, address: str) -> bool:
        self._load()
        return address_key(address) in self._addresses


def classify(
    message: email.message.Message, site: Site, recipients: Recipients, secret: str | None
) -> list[Decision] | None:
    """What to do with one message: its decisions (one per address), or None to leave it alone."""
    report = _delivery_status(message)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a malformed message: it is not ours to decide
        temporary, permanent = frozenset(), frozenset()
    failed = {_text(a): "hard" for a in permanent} | {_text(a): "soft" for a in temporary - permanent}
    if report:
        for address, (status, _) in report.items():
            if status[:1] in ("4", "5") and address not in failed:
                failed[address] = status_kind(status)
    failed = dict([(a, kind) for a, kind in failed.items() if "@" in a and len(a) <= _LONGEST_ADDRESS][:MAX_ADDRESSES])
    # Bounces say Auto-Submitted too (RFC 3834): an auto-reply's text that a heuristic detector misreads as a
    # failure is told apart by who sent it.
    returned = recipients.by_return_path(message, secret)
    if returned and (report is not None or _from_mail_system(message) or (failed and not _auto_reply(message))):
        return [_bounce_to_return_path(message, returned, failed, report or {})]
    if failed and (report is not None or _from_mail_system(message) or not _auto_reply(message)):
        # With bounce_address, every message of a send went out with its own signed return path, and its bounces
        # come back there. One that did not (a made-up token, none at all) names whom anyone likes: not trusted.
        return _bounces(message, failed, report or {}, recipients, signed_only=bool(site.bounce_address))
    if report is None and _auto_reply(message, loose=True):
        return [Decision("auto-reply", evidence=_facts(message))]
    return _unsubscribe(message, site, secret)


def status_kind(status: str) -> str:
    """A DSN status as a bounce: 5.x.x hard, 4.x.x soft; but a full mailbox (X.2.2) is soft even when the server
    calls it permanent, as RFC 3463 allows it to be transient and most senders count it: the person is still
    there, and may empty it."""
    code = status.strip().split(".")
    return "hard" if code[0] == "5" and code[1:3] != ["2", "2"] else "soft"


def _bounce_to_return_path(
    message: email.message.Message, returned: tuple[str, str], failed: dict[str, str], report: dict
) -> Decision:
    """A bounce sent to one recipient's return path: theirs, whatever address the DSN names (a forward, an
    alias) or fails to name. Hard when the server said 5.x.x (or the detector found a permanent failure);
    soft when it said nothing it is sure of: a score, not a suppression at once."""
    issue, address = returned
    status, diagnostic = report.get(address) or next(iter(report.values()), (None, None))
    statuses = [s for s, _ in report.values() if s]
    hard = any(status_kind(s) == "hard" for s in statuses) or (not statuses and "hard" in failed.values())
    kind = "hard" if hard else "soft"
    facts = {**_facts(message), "bounce": kind, "status": status, "diagnostic": diagnostic, "matched": "return path"}
    return Decision(kind, address, issue, facts)


# Where the address a bounce was delivered to shows (the envelope recipient, which is our return path).
RETURN_PATH_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


def _bounces(
    message: email.message.Message,
    failed: dict[str, str],
    report: dict,
    recipients: Recipients,
    *,
    signed_only: bool,
) -> list[Decision]:
    """A decision for each failed address a bounce names; `unsigned` for each when only a signed return path is
    trusted (`classify`): recorded with its evidence, suppressing no one."""
    original = None if signed_only else recipients.by_message_id(_quoted_ids(message))
    decisions = []
    for address, kind in sorted(failed.items()):
        status, diagnostic = report.get(address, (None, None))
        if status:
            kind = status_kind(status)
        facts = {**_facts(message), "bounce": kind, "status": status, "diagnostic": diagnostic, "failed": address}
        if signed_only:
            decisions.append(Decision("unsigned", address, None, facts))
        elif recipients.mailed(address):
            issue = original[0] if original and address_key(original[1]) == address_key(address) else None
            decisions.append(Decision(kind, address, issue or (original[0] if original else None), facts))
        elif original:
            # The quoted Message-ID names whom we mailed: the failing address is where theirs forwards to.
            decisions.append(Decision(kind, original[1], original[0], facts))
        else:
            decisions.append(Decision("unknown", address, None, facts))
    return decisions


def _unsubscribe(message: email.message.Message, site: Site, secret: str | None) -> list[Decision] | None:
    if not site.unsubscribe_mailto or secret is None:
        return None
    to = [a for _, a in email.utils.getaddresses(_headers(message, "To", "Cc", "Delivered-To", "X-Original-To"))]
    if address_key(site.unsubscribe_mailto) not in {address_key(a) for a in to if a}:
        return None
    # A reply quotes the issue, and the issue's text carries the reader's unsubscribe link: where the mailto address
    # also takes replies (it may be reply_to), a "thank you" would unsubscribe. A reply's token counts in its Subject
    # only, where the List-Unsubscribe mailto puts it; a message of its own may carry it in its text too.
    reply = message.get("In-Reply-To") or message.get("References")
    for text in (_subject(message),) if reply else (_subject(message), _body_text(message)):
        for token in _TOKEN.findall(text):
            signed = read_signed(secret, site.list_identifier, token)
            if signed:
                return [Decision("mailto", signed.address, signed.issue, _facts(message))]
    return None


def _from_mail_system(message: email.message.Message) -> bool:
    sender = " ".join(_headers(message, "From", "Return-Path")).lower()
    return bool(message.get("X-Failed-Recipients")) or any(
        name in sender for name in ("mailer-daemon", "postmaster", "<>")
    )


def _auto_reply(message: email.message.Message, *, loose: bool = False) -> bool:
    submitted = str(message.get("Auto-Submitted", "")).strip().lower()
    if submitted and not submitted.startswith("no"):
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond") or message.get("X-Autoresponder"):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    subject = _subject(message)
    if _AUTO_SUBJECT.match(subject):
        return True
    # bulk/junk is also how lists mark their own mail: it counts only on a reply (a vacation responder's)
    reply = message.get("In-Reply-To") or message.get("References") or subject.strip().lower().startswith("re:")
    return loose and bool(reply) and str(message.get("Precedence", "")).strip().lower() in ("bulk", "junk")


def _delivery_status(message: email.message.Message) -> dict[str, tuple[str, str]] | None:
    """{failed address: (status, diagnostic text)} from an RFC 3464 report; None without one."""
    found: dict[str, tuple[str, str]] | None = None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        found = found if found is not None else {}
        blocks = part.get_payload()
        if not isinstance(blocks, list):  # an unparsable part: read its text as header blocks
            text = part.get_payload(decode=True) or b""
            blocks = [email.message_from_string(b) for b in text.decode("ascii", "replace").split("\n\n")]
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            address = recipient.partition(";")[2].strip().strip("<>").lower() or recipient.strip().lower()
            status = str(block.get("Status", "")).strip().split()[0] if block.get("Status") else ""
            action = str(block.get("Action", "")).strip().lower()
            if not address or action in ("delivered", "relayed", "expanded"):
                continue
            diagnostic = _clip(" ".join(str(block.get("Diagnostic-Code", "")).split()))
            found[address] = (status if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", status) else "", diagnostic)
    return found


def _quoted_ids(message: email.message.Message) -> str:
    """Every Message-ID the bounce quotes (headers of the returned message, or its text)."""
    found = []
    for part in message.walk():
        if part is message:
            continue
        for name in ("Message-ID", "In-Reply-To", "References"):
            found.extend(str(v) for v in part.get_all(name, []))
        if part.get_content_maintype() == "text" or part.get_content_type() == "text/rfc822-headers":
            found.append(_part_text(part))
    found.extend(str(v) for v in message.get_all("In-Reply-To", []) + message.get_all("References", []))
    return "\n".join(found)


def _facts(message: email.message.Message) -> dict:
    return {
        "message_id": _clip(str(message.get("Message-ID", "")).strip()),
        "date": _clip(str(message.get("Date", "")).strip()),
        "from": _clip(str(message.get("From", "")).strip()),
        "subject": _subject(message).strip()[:200],
    }


def _clip(text: str) -> str:
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…"


def _subject(message: email.message.Message) -> str:
    """The Subject as written: a mail program may send it as RFC 2047 encoded-words (=?utf-8?q?unsubscribe_...?=),
    split anywhere, even inside the token it carries."""
    raw = str(message.get("Subject", ""))
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):  # a made-up charset, bad bytes
        return raw


def _headers(message: email.message.Message, *names: str) -> list[str]:
    return [str(v) for name in names for v in message.get_all(name, [])]


def _body_text(message: email.message.Message) -> str:
    return "\n".join(_part_text(p) for p in message.walk() if p.get_content_type() == "text/plain")


def _part_text(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _text(address: bytes | str) -> str:
    return (address.decode("utf-8", "replace") if isinstance(address, bytes) else address).strip().lower()


def message_key(message: email.message.Message, data: bytes) -> str:
    """What a decision is recorded under: the Message-ID (for people to find it by) and a digest of the message.

    The Message-ID alone would not do: two different messages can carry the same one, by a sender's fault or by
    design (a forged bounce for nobody, then the real bounce whose Message-ID it took), and the second would be
    taken as read and moved away unread. The same message read again has the same digest: recorded once.
    """
    found = _clip(str(message.get("Message-ID", "")).strip())
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return f"{found} {digest}" if found else digest


def bounce_day(message: email.message.Message) -> str:
    """The day a bounce counts for: its Date, else today (UTC); never after today, so that a bounce dated in the
    future cannot stand as the latest and keep every real one from counting."""
    now = dt.datetime.now(dt.UTC)
    try:
        when = email.utils.parsedate_to_datetime(str(message.get("Date", "")))
        when = min((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC), now)
    except (TypeError, ValueError, IndexError, OverflowError):
        when = None
    return (when or now).date().isoformat()


class Source(Protocol):
    """Where `read_mailbox` reads messages from, and moves those it recognised and recorded out of the way:
    a Maildir or an mbox (`LocalMailbox`), or an IMAP folder (`imap.ImapMailbox`)."""

    def messages(self, summary: Summary) -> Iterator[tuple[str, bytes]]:
        """(key, its first READ_LIMIT bytes) of each message; one that goes away meanwhile is a note in `summary`."""
        ...

    def move(self, key: str, summary: Summary) -> bool:
        """Move a recognised message, already recorded, to the processed folder, unread still; False when it stays
        (an mbox is never changed) or is gone."""
        ...


def read_mailbox(
    source: Source, root: Path, site: Site, *, on_decision: Callable[[Decision], None] | None = None
) -> Summary:
    """Read every message once, recording each decision (then `on_decision`, told as it is recorded)."""
    summary = Summary()
    recipients = Recipients(root)
    # Without the key, no return path can be read, and every bounce would be taken for one not to a return path.
    secret = require_secret(READS_RETURN_PATHS) if site.bounce_address else secret_from_env()
    with SuppressionStore.open(root) as store:
        for key, data in source.messages(summary):
            summary.read += 1
            try:
                message = email.message_from_bytes(data, policy=email.policy.compat32)
                name = message_key(message, data)
                already = store.recorded(name)
                decisions = None if already else classify(message, site, recipients, secret)
            except RecursionError:
                # The stdlib parses (and walks) nested MIME parts recursively: a thousand levels of multipart would
                # otherwise stop this run, and every later one, at the same message.
                summary.notes.append(f"message {key} left alone: its MIME parts are nested too deep to read")
                summary.left += 1
                continue
            if already:
                summary.already += 1
            elif decisions is None:
                summary.left += 1
                continue
            else:
                store.record_decisions(
                    name,
                    decisions,
                    day=bounce_day(message),
                    threshold=site.inbox.soft_bounce_threshold,
                    resets_after=site.inbox.score_resets_after_days,
                )
                for decision in decisions:
                    summary.kinds[decision.kind] += 1
                    if on_decision is not None:
                        on_decision(decision)
            # Recorded (now or by a run cut short before its move): out of the way.
            summary.moved += source.move(key, summary)
    return summary


@dataclass
class LocalMailbox:
    """A Maildir or an mbox on this machine. A Maildir's messages move into `move_to` by renaming their files
    (never a copy, never lost); an mbox is never changed."""

    box: mailbox.Mailbox
    path: Path
    move_to: mailbox.Maildir | None = None

    def messages(self, summary: Summary) -> Iterator[tuple[str, bytes]]:
        box, path = self.box, self.path
        try:
            keys = list(box.keys())
        except FileNotFoundError:
            raise MailboxGone(Problem(path, "the mailbox went away before it could be read")) from None
        except OSError as exc:
            raise NewsletterError(Problem(path, f"cannot read the mailbox: {exc.strerror or exc}")) from None
        for key in keys:
            try:
                with _open_message(box, key) as file:
                    data = file.read(READ_LIMIT)
            except NewsletterError as exc:
                summary.notes.append(f"message {key} left alone: {exc}")
                continue
            except KeyError:
                summary.notes.append(f"message {key} went away while reading; left to the next run")
                continue
            except FileNotFoundError:
                if not path.exists():
                    raise MailboxGone(
                        Problem(path, "the mailbox went away while reading it; what was read is recorded")
                    ) from None
                summary.notes.append(f"message {key} went away while reading; left to the next run")
                continue
            except OSError as exc:
                raise NewsletterError(Problem(path, f"cannot read the mailbox: {exc.strerror or exc}")) from None
            yield key, data

    def move(self, key: str, summary: Summary) -> bool:
        """Rename the message's file into `move_to`, keeping its name and so its flags (unread stays unread)."""
        if self.move_to is None or not isinstance(self.box, mailbox.Maildir):
            return False
        try:
            relative = self.box._lookup(key)  # the file's name under new/ or cur/: the stdlib offers no public way
            os.rename(Path(self.box._path) / relative, Path(self.move_to._path) / relative)
        except (KeyError, FileNotFoundError):
            summary.gone_before_move(key)
            return False
        except OSError as exc:
            raise NewsletterError(Problem(self.path, f"cannot move message {key}: {exc.strerror or exc}")) from None
        return True


def _open_message(box: mailbox.Mailbox, key: str) -> BinaryIO:
    if isinstance(box, mailbox.Maildir):
        # Not box.get_file: a FIFO dropped among the messages would block it for ever.
        return open_regular(Path(box._path) / box._lookup(key), "message")
    return box.get_file(key)


def open_maildir(path: Path, folder_name: str) -> LocalMailbox:
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise MailboxGone(Problem(path, "is not a Maildir (it needs cur/, new/ and tmp/)"))
    box = mailbox.Maildir(path, factory=None, create=False)
    name = folder_name.lstrip(".")
    try:
        folder = box.get_folder(name) if name in box.list_folders() else box.add_folder(name)
    except OSError as exc:
        raise NewsletterError(Problem(path / f".{name}", f"cannot make the folder: {exc.strerror or exc}")) from None
    return LocalMailbox(box, path, folder)


def open_mbox(path: Path) -> LocalMailbox:
    if not path.is_file():
        raise MailboxGone(Problem(path, "no such mbox file"))
    return LocalMailbox(mailbox.mbox(path, factory=None, create=False), path)
