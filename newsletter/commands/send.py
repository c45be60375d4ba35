"""`newsletter send` and `newsletter status`: plain functions; the CLI asks and prints."""

from __future__ import annotations

import os
import shutil
import smtplib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

from ..errors import NewsletterError, Problem
from ..files import open_regular
from ..issue_identity import Admitted, admit, relative
from ..ledger import FAILED, SENDING, SENT, IssueRecord, Ledger, refuse_an_interrupted_restore
from ..message import Envelope, Recipient
from ..model import is_email_address
from ..pipeline import Checked, check, slug_for
from ..project import open_project
from ..sending import Options, Outcome, Sender
from ..smtp import Settings, close, connect, shown_reply
from ..state import ledger_path, move_old_ledger, state_folder
from ..subscribers import DUPLICATE, INVALID, PENDING, SUPPRESSED, Entry, read_subscribers, read_suppressions
from ..unsubscribe import (
    MAKE_SECRET,
    PREVIEW_SECRET,
    SECRET_ENV,
    secret_fingerprint,
    secret_from_env,
    secret_problem,
)
from .build import write_atomically

SUPPRESSION_FILE = "suppressions.csv"
TEST_PREFIX = "[TEST] "


def suppression_path(checked: Checked, given: Path | None) -> Path | None:
    """The list of who left: the one given, or the project's suppressions.csv if there is one."""
    if given is not None:
        if not given.exists():
            raise NewsletterError(Problem(given, "no such suppression list"))
        return given
    default = checked.project.root / SUPPRESSION_FILE
    if default.is_symlink() and not default.exists():  # a link to a drive not mounted: never "no list"
        raise NewsletterError(Problem(default, f"links to {os.readlink(default)}, which cannot be read"))
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
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise NewsletterError(Problem(Path(exc.filename or folder), f"cannot write: {exc.strerror}")) from None
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


def send_test(issue_path: Path, address: str, settings: Settings) -> list[Problem]:
    """One message with a [TEST] subject to `address`; recorded nowhere. Returns warnings for the sender.

    Raises NewsletterError, before building anything, for a weak NEWSLETTER_SECRET, as a real send does.
    """
    if not is_email_address(address):
        raise NewsletterError(f"--test: '{address}' is not an email address")
    warnings: list[Problem] = []
    if secret_from_env():
        secret = require_secret()
    else:
        # An advisor may well test the look of an issue without the key; the
        # copy's link must not pass for one that works.
        secret = PREVIEW_SECRET
        warnings.append(
            Problem(
                None,
                "the test copy's unsubscribe link is signed with the preview key and will not work; "
                f"to test it, set {SECRET_ENV} to the key the real send uses (to make one: {MAKE_SECRET})",
            )
        )
    checked = check(issue_path)
    envelope = Envelope.prepare(checked.rendered, subject_prefix=TEST_PREFIX, test=True)
    recipient = Recipient(address)
    message = envelope.compose(recipient, envelope.values(recipient, secret))
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
    return warnings


@dataclass(frozen=True)
class Plan:
    """What a send is about to do, for the confirmation prompt. Nothing is sent or reset yet."""

    checked: Checked
    ledger: Ledger
    admitted: Admitted  # which issue, which version: recorded once the send is confirmed
    to_send: int
    already_sent: int
    skipped: dict[str, int]  # duplicate, invalid, suppressed
    uncertain: list[str]  # addresses left `sending` by an earlier run that died
    failed_before: int
    resend_uncertain: bool = False
    retry_failed: bool = False
    notices: tuple[Problem, ...] = ()  # worth saying before the send starts

    @property
    def identity(self) -> str:
        return self.admitted.identity


def plan_send(
    issue_path: Path,
    to: Path,
    *,
    suppressed: Path | None = None,
    resend_uncertain: bool = False,
    retry_failed: bool = False,
    moved: bool = False,
    changed_content: bool = False,
) -> Plan:
    """Check the issue, record the list in the ledger, and count what a send would do.

    The ledger is claimed for this run: a second send of the same project at
    the same time is refused, as it would mail the same people.
    """
    checked = check(issue_path)
    suppressions = read_suppressions(suppression_path(checked, suppressed))
    entries: Iterator[Entry] = read_subscribers(to, suppressions, dedupe=False)  # the ledger finds duplicates
    notices, ledger = open_ledger(checked.project.root)
    try:
        ledger.claim()
        admitted = admit(
            ledger,
            checked.rendered,
            issue_path,
            checked.project.root,
            moved=moved,
            changed_content=changed_content,
            secret=secret_from_env(),
        )
        identity = admitted.identity
        ledger.import_list(identity, entries)
        counts = ledger.counts(identity, listed_only=True)
        uncertain = [email for email, *_ in ledger.rows_in(identity, SENDING, listed_only=True)]
    except BaseException:
        ledger.close()
        raise
    to_send = counts[PENDING] + (counts[SENDING] if resend_uncertain else 0) + (counts[FAILED] if retry_failed else 0)
    return Plan(
        checked,
        ledger,
        admitted,
        to_send=to_send,
        already_sent=counts[SENT],
        skipped={k: counts[k] for k in (DUPLICATE, INVALID, SUPPRESSED)},
        uncertain=uncertain,
        failed_before=counts[FAILED],
        resend_uncertain=resend_uncertain,
        retry_failed=retry_failed,
        notices=(*notices, *admitted.warnings),
    )


def open_ledger(root: Path) -> tuple[list[Problem], Ledger]:
    """The project's send ledger in state/, moving one an earlier version left in outbox/."""
    moved = move_old_ledger(root)
    state_folder(root)
    return ([moved] if moved else []), Ledger(ledger_path(root))


def execute(
    plan: Plan,
    settings: Settings,
    options: Options,
    *,
    limit: int | None = None,
    secret: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Send what the plan says. The caller closes `plan.ledger`.

    Should the ledger's file be deleted or replaced during the send, the
    send stops, the record is written back from the open database, and
    NewsletterError says what happened.
    """
    secret = secret or require_secret()
    identity = plan.identity
    # Only now, with the send confirmed, is the issue recorded as sent from this file, with this content
    # and key, and do earlier failures become sendable.
    plan.ledger.record_issue(replace(plan.admitted.record, secret=secret_fingerprint(secret)))
    if plan.resend_uncertain:
        plan.ledger.reset(identity, SENDING)
    if plan.retry_failed:
        plan.ledger.reset(identity, FAILED)
    envelope = Envelope.prepare(plan.checked.rendered)
    rows = plan.ledger.pending(identity)
    if limit is not None:
        rows = islice(rows, limit)
    outcome = Sender(envelope, settings, plan.ledger, secret, options, on_progress, content=plan.admitted.content).run(
        rows
    )
    if not plan.ledger.intact():
        ledger = plan.ledger.path
        found = plan.ledger.restore()
        aside = f"; the file found in its place was kept as {found.name}" if found else ""
        raise NewsletterError(
            Problem(
                ledger,
                f"the send ledger was deleted or replaced while sending (sent {outcome.sent} this run). It has been "
                f"written back from the open copy{aside}, so nobody is mailed twice; the send stopped. "
                "Run the same command again to continue",
            )
        )
    return outcome


def require_secret() -> str:
    """The key that signs unsubscribe links; a real send cannot go without a strong one.

    Raises NewsletterError when NEWSLETTER_SECRET is unset, or too weak to keep
    links from being forged (see `unsubscribe.secret_bits`).
    """
    secret = secret_from_env()
    if not secret:
        raise NewsletterError(
            f"set {SECRET_ENV}: the key that signs each subscriber's unsubscribe link "
            f"(keep it the same for every issue; to make one: {MAKE_SECRET})"
        )
    problem = secret_problem(secret)
    if problem:
        raise NewsletterError(problem)
    return secret


@dataclass(frozen=True)
class Status:
    identity: str  # the issue the ledger's figures are of
    recorded_as: IssueRecord | None  # set when that is not what the file says: its id changed since
    counts: dict[str, int]
    failures: list[tuple[str, str, int, int]]
    uncertain: list[tuple[str, str, int, int]]
    invalid: list[tuple[str, str, int, int]]
    versions: list[tuple[str, int, float]]  # (content, recipients, first sent), oldest first
    current: str | None  # the content the latest run sent
    notices: list[Problem]


def status(issue_path: Path) -> Status:
    """The ledger's view of one issue; no need for the issue to be valid now, but it must be there."""
    open_regular(issue_path, "issue file").close()  # a typo in the name must not read as "not sent yet"
    root = open_project(issue_path).root
    slug = slug_for(issue_path)
    notices = []
    refuse_an_interrupted_restore(ledger_path(root))
    if not ledger_path(root).exists():
        moved = move_old_ledger(root)
        if moved is None:
            raise NewsletterError(Problem(issue_path, "has not been sent yet: there is no send ledger"))
        notices.append(moved)
    with Ledger(ledger_path(root)) as ledger:
        declared = _declared_id(issue_path) or slug
        # Known by its id or name; else by the path it was sent from, should its id have changed since.
        record = ledger.issue_record(declared) or ledger.issue_sent_from(relative(issue_path, root))
        identity = record.issue if record else declared
        return Status(
            identity,
            record if record and record.issue != declared else None,
            ledger.counts(identity),
            ledger.rows_in(identity, FAILED),
            ledger.rows_in(identity, SENDING),
            ledger.rows_in(identity, INVALID),
            ledger.versions(identity),
            record.content if record else None,
            notices,
        )


def _declared_id(issue_path: Path) -> str | None:
    """The file's `id:`, read leniently: status must work on an issue that no longer validates."""
    from ..yamlsource import load

    try:
        data = load(issue_path, "issue file").data
    except NewsletterError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address)[:80]
