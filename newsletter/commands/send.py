"""`newsletter send` and `newsletter status`: plain functions; the CLI asks and prints."""

from __future__ import annotations

import shutil
import smtplib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from ..errors import NewsletterError, Problem
from ..ledger import FAILED, SENDING, Ledger
from ..message import Envelope, Recipient
from ..model import is_email_address
from ..pipeline import Checked, check, slug_for
from ..project import open_project
from ..sending import Options, Outcome, Sender
from ..smtp import Settings, close, connect, shown_reply
from ..subscribers import DUPLICATE, INVALID, PENDING, SUPPRESSED, Entry, read_subscribers, read_suppressions
from ..unsubscribe import PREVIEW_SECRET, SECRET_ENV, secret_from_env
from .build import write_atomically

LEDGER_FILE = "ledger.sqlite3"
SUPPRESSION_FILE = "suppressions.csv"
TEST_PREFIX = "[TEST] "


def ledger_path(checked: Checked) -> Path:
    return checked.project.outbox / LEDGER_FILE


def suppression_path(checked: Checked, given: Path | None) -> Path | None:
    if given is not None:
        if not given.exists():
            raise NewsletterError(Problem(given, "no such suppression list"))
        return given
    default = checked.project.root / SUPPRESSION_FILE
    return default if default.exists() else None


@dataclass(frozen=True)
class DryRun:
    folder: Path
    written: int
    skipped: Counter[str]


def dry_run(issue_path: Path, to: Path, *, limit: int | None = None, suppressed: Path | None = None) -> DryRun:
    """Write every message as .eml under outbox/<slug>/dry-run/; connect to nothing, record nothing."""
    checked = check(issue_path)
    envelope = Envelope.prepare(checked.rendered)
    secret = secret_from_env() or PREVIEW_SECRET
    folder = checked.project.outbox / checked.rendered.slug / "dry-run"
    shutil.rmtree(folder, ignore_errors=True)  # it shows this run only
    folder.mkdir(parents=True)
    written = 0
    skipped: Counter[str] = Counter()
    for entry in read_subscribers(to, read_suppressions(suppression_path(checked, suppressed))):
        if entry.state != PENDING:
            skipped[entry.state] += 1
            continue
        if limit is not None and written >= limit:
            break
        recipient = Recipient(entry.email, entry.name, entry.fields)
        written += 1
        name = f"{written:06d}-{_safe(entry.email)}.eml"
        write_atomically(folder / name, envelope.compose(recipient, envelope.values(recipient, secret)))
    return DryRun(folder, written, skipped)


def send_test(issue_path: Path, address: str, settings: Settings) -> None:
    """One message with a [TEST] subject to `address`; recorded nowhere."""
    if not is_email_address(address):
        raise NewsletterError(f"--test: '{address}' is not an email address")
    checked = check(issue_path)
    envelope = Envelope.prepare(checked.rendered, subject_prefix=TEST_PREFIX, test=True)
    recipient = Recipient(address)
    message = envelope.compose(recipient, envelope.values(recipient, secret_from_env() or PREVIEW_SECRET))
    smtp = connect(settings)
    try:
        refused = smtp.sendmail(checked.project.site.from_.email, [address], message)
        if refused:
            raise NewsletterError(f"the server refused {address}: {shown_reply(*refused[address], settings)}")
    except smtplib.SMTPRecipientsRefused as exc:
        said = shown_reply(*exc.recipients[address], settings)
        raise NewsletterError(f"the server refused {address}: {said}") from None
    except smtplib.SMTPResponseException as exc:
        said = shown_reply(exc.smtp_code, exc.smtp_error, settings)
        raise NewsletterError(f"the server refused the message: {said}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NewsletterError(f"sending failed: {exc}") from None
    finally:
        close(smtp)


@dataclass(frozen=True)
class Plan:
    """What a send is about to do, for the confirmation prompt. Nothing is sent or reset yet."""

    checked: Checked
    ledger: Ledger
    to_send: int
    already_sent: int
    skipped: dict[str, int]  # duplicate, invalid, suppressed
    uncertain: list[str]  # addresses left `sending` by an earlier run that died
    failed_before: int
    resend_uncertain: bool = False
    retry_failed: bool = False


def plan_send(
    issue_path: Path,
    to: Path,
    *,
    suppressed: Path | None = None,
    resend_uncertain: bool = False,
    retry_failed: bool = False,
) -> Plan:
    """Check the issue, record the list in the ledger, and count what a send would do.

    The ledger is claimed for this run: a second send of the same project at
    the same time is refused, as it would mail the same people.
    """
    checked = check(issue_path)
    slug = checked.rendered.slug
    suppressions = read_suppressions(suppression_path(checked, suppressed))
    entries: Iterator[Entry] = read_subscribers(to, suppressions, dedupe=False)  # the ledger finds duplicates
    ledger = Ledger(ledger_path(checked))
    try:
        ledger.claim()
        ledger.import_list(slug, entries)
        counts = ledger.counts(slug, listed_only=True)
        uncertain = [email for email, *_ in ledger.rows_in(slug, SENDING, listed_only=True)]
    except BaseException:
        ledger.close()
        raise
    to_send = counts[PENDING] + (counts[SENDING] if resend_uncertain else 0) + (counts[FAILED] if retry_failed else 0)
    return Plan(
        checked,
        ledger,
        to_send=to_send,
        already_sent=counts["sent"],
        skipped={k: counts[k] for k in (DUPLICATE, INVALID, SUPPRESSED)},
        uncertain=uncertain,
        failed_before=counts[FAILED],
        resend_uncertain=resend_uncertain,
        retry_failed=retry_failed,
    )


def execute(
    plan: Plan,
    settings: Settings,
    options: Options,
    *,
    limit: int | None = None,
    secret: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Send what the plan says. The caller closes `plan.ledger`."""
    secret = secret or require_secret()
    slug = plan.checked.rendered.slug
    # Only now, with the send confirmed, do earlier failures become sendable.
    if plan.resend_uncertain:
        plan.ledger.reset(slug, SENDING)
    if plan.retry_failed:
        plan.ledger.reset(slug, FAILED)
    envelope = Envelope.prepare(plan.checked.rendered)
    rows = plan.ledger.pending(slug)
    if limit is not None:
        rows = islice(rows, limit)
    return Sender(envelope, settings, plan.ledger, secret, options, on_progress).run(rows)


def require_secret() -> str:
    """The key that signs unsubscribe links; a real send cannot go without it."""
    secret = secret_from_env()
    if not secret:
        raise NewsletterError(
            f"set {SECRET_ENV}: the key that signs each subscriber's unsubscribe link "
            "(keep it the same for every issue)"
        )
    return secret


@dataclass(frozen=True)
class Status:
    counts: dict[str, int]
    failures: list[tuple[str, str, int, int]]
    uncertain: list[tuple[str, str, int, int]]
    invalid: list[tuple[str, str, int, int]]


def status(issue_path: Path) -> Status:
    """The ledger's view of one issue; no need for the issue to be valid now."""
    path = open_project(issue_path).outbox / LEDGER_FILE
    slug = slug_for(issue_path)
    if not path.exists():
        raise NewsletterError(Problem(issue_path, "has not been sent yet: there is no send ledger"))
    with Ledger(path) as ledger:
        return Status(
            ledger.counts(slug),
            ledger.rows_in(slug, FAILED),
            ledger.rows_in(slug, SENDING),
            ledger.rows_in(slug, INVALID),
        )


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address)[:80]
