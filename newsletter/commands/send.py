"""`newsletter send`: plain functions; the CLI asks and prints."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..delivery import deliver_one
from ..delivery_state import DeliveryState
from ..errors import NewsletterError, Problem
from ..message import Composer
from ..model import is_email_address
from ..personalise import Recipient
from ..pipeline import check
from ..send_plan import suppression_path
from ..smtp import Settings
from ..subscribers import read_subscribers, read_suppressions
from ..unsubscribe import (
    MAKE_SECRET,
    SECRET_ENV,
    secret_from_env,
    secret_problem,
    signing_key,
)
from .build import write_atomically

TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class DryRun:
    folder: Path
    written: int
    skipped: Counter[DeliveryState]


def dry_run(issue_path: Path, to: Path, *, limit: int | None = None, suppressed: Path | None = None) -> DryRun:
    """Write every message as .eml under outbox/<slug>/dry-run/; connect to nothing, record nothing."""
    checked = check(issue_path)
    composer = Composer.prepare(checked.rendered)
    key = signing_key()
    folder = checked.project.outbox / checked.rendered.slug / "dry-run"
    shutil.rmtree(folder, ignore_errors=True)  # it shows this run only
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise NewsletterError(Problem(Path(exc.filename or folder), f"cannot write: {exc.strerror}")) from None
    written = 0
    skipped: Counter[DeliveryState] = Counter()
    for entry in read_subscribers(to, read_suppressions(suppression_path(checked, suppressed))):
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
        secret = signing_key()
        warnings.append(
            Problem(
                None,
                "the test copy's unsubscribe link is signed with the preview key and will not work; "
                f"to test it, set {SECRET_ENV} to the key the real send uses (to make one: {MAKE_SECRET})",
            )
        )
    checked = check(issue_path)
    composer = Composer.prepare(checked.rendered, subject_prefix=TEST_PREFIX, test=True)
    message = composer.personalise(Recipient(address), secret).message()
    deliver_one(settings, checked.project.site.from_.email, address, message)
    return warnings


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


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address)[:80]
