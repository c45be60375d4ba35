"""`newsletter send`: to the list (plan, deliver, report), as a dry run, or one [TEST] copy.

Each command takes what the person chose and a `Console` to say things
and ask through; the ledger, its claim and the SMTP connections are
acquired and released inside the command that needs them.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..console import Console, shown_path, warn
from ..delivery import Options, Outcome, SystemClock, deliver, deliver_one
from ..delivery_state import DeliveryState
from ..errors import NewsletterError, Problem
from ..message import Composer
from ..model import is_email_address
from ..pace import Pace
from ..personalise import Recipient
from ..pipeline import check
from ..project import open_project
from ..report import SendReport, resume_command
from ..send_plan import plan_send, who_left
from ..smtp import Settings, settings_from, with_password
from ..subscribers import read_subscribers
from ..unsubscribe import MAKE_SECRET, SECRET_ENV, require_secret, secret_from_env, secret_warnings, signing_key
from .build import write_atomically

TEST_PREFIX = "[TEST] "


def send_command(
    issue: Path,
    to: Path,
    *,
    console: Console,
    limit: int | None = None,
    connections: int = 4,
    rate: float | None = None,
    yes: bool = False,
    suppressed: Path | None = None,
    ca_file: Path | None = None,
    resend_uncertain: bool = False,
    retry_failed: bool = False,
    moved: bool = False,
    changed_content: bool = False,
) -> Outcome | None:
    """Send ISSUE to everyone on the list `to` who has not had it, after asking (unless `yes`).

    Returns what this run did, or None when it sent nothing (nothing to send,
    or the answer was no). Raises NewsletterError for a problem before the
    send, and, after it, when it stopped or was interrupted (saying how to
    resume) or when anyone of this run failed or is uncertain.
    """
    checked_settings = _server_settings(issue, ca_file)
    with plan_send(
        issue,
        to,
        suppressed=suppressed,
        resend_uncertain=resend_uncertain,
        retry_failed=retry_failed,
        moved=moved,
        changed_content=changed_content,
    ) as plan:
        warn(console, plan.warnings)
        to_send = plan.this_run(limit)
        if to_send == 0:
            console.say(
                f"nothing to send: {plan.already_sent} already sent, {plan.failed_before} failed, "
                f"skipped: {plan.skipped_text}"
            )
            return None
        key = require_secret()  # before asking anything: no point confirming a send that cannot start
        settings = _with_password(checked_settings or settings_from(plan.checked.project.site.smtp, ca_file), console)
        console.say(f"Issue:      {plan.checked.issue.subject_line}")
        console.say(
            f"Recipients: {to_send} to send now ({plan.already_sent} already sent; skipped: {plan.skipped_text})"
        )
        console.say(f"Server:     {settings.address}" + (f" as {settings.username}" if settings.username else ""))
        if plan.checked.warnings:
            console.say(f"Warnings:   {len(plan.checked.warnings)} (see newsletter check {issue})")
        if not yes and not console.confirm("Send now?"):
            return None
        pace = Pace(connections, rate, SystemClock().now)
        with console.progress(to_send, "Sending", status=pace.describe) as on_progress:
            outcome = deliver(
                plan,
                settings,
                Options(connections=connections, rate=rate),
                key=key,
                limit=limit,
                on_progress=on_progress,
                pace=pace,
            )
        counts = plan.ledger.counts(plan.identity, listed_only=True)
        report = SendReport(issue, outcome, counts, plan.skipped_text, resume_command(issue, to, suppressed))
    slowed = report.slowed()
    if slowed is not None:
        console.say(slowed)
    console.say(report.summary())
    problem = report.problem()
    if problem is not None:
        raise problem
    hint = report.hint()
    if hint is not None:
        console.say(hint)
    return outcome


@dataclass(frozen=True)
class DryRun:
    folder: Path
    written: int
    skipped: Counter[DeliveryState]


def dry_run_command(
    issue: Path, to: Path, *, console: Console, limit: int | None = None, suppressed: Path | None = None
) -> DryRun:
    """Write every message as .eml under outbox/<slug>/dry-run/ and say where; connect to nothing, record nothing."""
    warn(console, secret_warnings())
    result = dry_run(issue, to, limit=limit, suppressed=suppressed)
    messages = f"{result.written} message{'s' if result.written != 1 else ''}"
    console.say(f"dry run: wrote {messages} to {shown_path(result.folder)}/; sent nothing")
    for state, n in sorted(result.skipped.items()):
        console.say(f"  skipped {n} {state}")
    return result


def dry_run(issue_path: Path, to: Path, *, limit: int | None = None, suppressed: Path | None = None) -> DryRun:
    """Write every message as .eml under outbox/<slug>/dry-run/; connect to nothing, record nothing."""
    checked = check(issue_path)
    composer = Composer.prepare(checked.rendered)
    key = signing_key()
    folder = checked.project.outbox / checked.rendered.slug / "dry-run"
    # Both lists are opened (the first row read) before the last run's files go: a wrong path must not cost them.
    entries = read_subscribers(to, who_left(checked, suppressed))
    first = next(entries, None)
    shutil.rmtree(folder, ignore_errors=True)  # it shows this run only
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise NewsletterError(Problem(Path(exc.filename or folder), f"cannot write: {exc.strerror}")) from None
    written = 0
    skipped: Counter[DeliveryState] = Counter()
    for entry in itertools.chain([first] if first else [], entries):
        if entry.state != DeliveryState.PENDING:
            skipped[entry.state] += 1
            continue
        if limit is not None and written >= limit:
            break
        written += 1
        name = f"{written:06d}-{_safe(entry.email)}.eml"
        copy = composer.personalise(Recipient(entry.email, entry.name, entry.fields), key)
        write_atomically(folder / name, copy.message())
    return DryRun(folder, written, skipped)


def test_command(issue: Path, address: str, *, console: Console, ca_file: Path | None = None) -> None:
    """One message with a [TEST] subject to `address`, through the server the list goes through; recorded nowhere.

    Raises NewsletterError, before building anything, for settings that
    cannot work and for a weak NEWSLETTER_SECRET, as a real send does.
    """
    settings = smtp_settings(issue, ca_file, console)
    if not is_email_address(address):
        raise NewsletterError(f"--test: '{address}' is not an email address")
    warnings: list[Problem] = []
    if secret_from_env():
        key = require_secret()
    else:
        # An advisor may well test the look of an issue without the key; the
        # copy's link must not pass for one that works.
        key = signing_key()
        warnings.append(
            Problem(
                None,
                "the test copy's unsubscribe link is signed with the preview key and will not work; "
                f"to test it, set {SECRET_ENV} to the key the real send uses (to make one: {MAKE_SECRET})",
            )
        )
    checked = check(issue)
    composer = Composer.prepare(checked.rendered, subject_prefix=TEST_PREFIX, test=True)
    message = composer.personalise(Recipient(address), key).message()
    deliver_one(settings, checked.project.site.from_.email, address, message)
    warn(console, warnings)
    console.say(f"sent a [TEST] message to {address} through {settings.address}")


test_command.__test__ = False  # for pytest: not a test, whatever its name says


def _server_settings(issue: Path, ca_file: Path | None) -> Settings | None:
    """The server's settings, checked (a CA file that is not one, a port out of range) before any list is
    read or recorded; None when the project itself cannot be read, which planning reports with the issue's
    own problems."""
    try:
        project = open_project(issue)
    except NewsletterError:
        return None
    return settings_from(project.site.smtp, ca_file)


def smtp_settings(issue: Path, ca_file: Path | None, console: Console) -> Settings:
    """The server to send through, with its password from the environment or asked for.

    Raises NewsletterError for settings that cannot work, and for a password
    needed where there is no one to ask.
    """
    return _with_password(settings_from(open_project(issue).site.smtp, ca_file), console)


def _with_password(settings: Settings, console: Console) -> Settings:
    if settings.username and not settings.password:
        password = console.ask_password(f"SMTP password for {settings.username}")
        if password is None:
            raise NewsletterError(
                f"set NEWSLETTER_SMTP_PASSWORD: the password for {settings.username} on {settings.host}"
            )
        settings = with_password(settings, password)
    return settings


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address)[:80]
