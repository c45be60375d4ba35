"""Which issue a send belongs to, and whether it may go on.

The ledger knows an issue by its identity: the `id:` in its file, which a
real send requires (a file's name changes with a rename). Once anyone has been sent an issue, a later run must be the
same issue from the same file with the same content, or say plainly that it
is not:

- a file renamed or moved since (`--moved` continues its send from there);
- a copy of it elsewhere, or another issue given the same `id:` (refused:
  they would share one record of who was mailed);
- a file that was sent under another identity (its id changed since);
- its content changed since the send began (`--changed-content` sends the
  rest the new version; `status` counts both).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .ledger import IssueRecord, Ledger
from .render import Rendered
from .slug import slug_for
from .unsubscribe import secret_fingerprint


@dataclass(frozen=True)
class Admitted:
    """An issue cleared to be sent: what to record once the send is confirmed, and what to say first."""

    record: IssueRecord
    warnings: list[Problem]

    @property
    def identity(self) -> str:
        return self.record.issue

    @property
    def content(self) -> str:
        return self.record.content


def fingerprint(rendered: Rendered) -> str:
    """What a recipient gets, apart from what is theirs: if this changes, the issue changed."""
    site = rendered.site
    parts = [
        rendered.issue.subject_line,
        site.from_.name,
        site.from_.email,
        site.reply_to or "",
        *(piece for slotted in (rendered.html, rendered.text) for piece in slotted.literals),
        *(f"{slot.key}\0{slot.fallback}" for slotted in (rendered.html, rendered.text) for slot in slotted.slots),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def admit(
    ledger: Ledger,
    rendered: Rendered,
    issue_path: Path,
    root: Path,
    *,
    moved: bool = False,
    changed_content: bool = False,
    secret: str | None = None,
) -> Admitted:
    """Check the file against the ledger's record of its issue; refuses with what to do.

    Nothing is written: the record changes only once the send is confirmed
    (`Ledger.record_issue`), so a run that is refused or answered "no" leaves
    the next run's checks as they were.
    """
    issue = rendered.issue
    identity = rendered.identity
    here = relative(issue_path, root)
    record = ledger.issue_record(identity)
    reached = _reached(ledger, identity)
    title, date = issue.title, issue.date.isoformat()
    warnings: list[Problem] = []
    if issue.id is None:
        # A file's name is no identity: renamed, it would look like a new issue and mail everyone again.
        raise NewsletterError(
            Problem(
                issue_path,
                f"has no id: line. Add 'id: {json.dumps(identity, ensure_ascii=False)}' at its top before sending: "
                "the send ledger knows an issue by it, so that a renamed or moved file is never mailed twice",
            )
        )
    if record is None and not reached:
        _refuse_a_sent_issue_under_a_new_identity(ledger, issue_path, here, identity)
    elif record is not None and reached:
        if record.path != here:
            earlier = root / record.path
            if earlier.exists() and not _same_file(earlier, issue_path):
                raise NewsletterError(
                    Problem(
                        issue_path,
                        f"is issue '{identity}', and so is {record.path}, which was sent to {reached} "
                        "recipients already: two files cannot share one record of who was mailed. "
                        f"If this is a new issue, give it its own id: line (like 'id: {identity}-2')",
                    )
                )
            if not moved:
                raise NewsletterError(
                    Problem(
                        issue_path,
                        f"issue '{identity}' was sent (to {reached} recipients) from {record.path}, which is no "
                        "longer there. If this file is that one, moved or renamed, run the same command with "
                        "--moved to continue its send from here",
                    )
                )
        if record.content != fingerprint(rendered) and not changed_content:
            raise NewsletterError(
                Problem(
                    issue_path,
                    f"has changed since its send began: {reached} recipients got the earlier version. "
                    "Sending now would give the rest a different issue. If the change is meant (a typo, a "
                    "dead link), run the same command with --changed-content; `newsletter status` counts "
                    "who got which version",
                )
            )
        if secret is not None and record.secret is not None and record.secret != secret_fingerprint(secret):
            warnings.append(
                Problem(
                    ledger.path,
                    "NEWSLETTER_SECRET is not the key the earlier run of this issue signed its links with: the "
                    "unsubscribe links already sent stop working wherever only the new key is known",
                )
            )
    signed = secret_fingerprint(secret) if secret else None
    return Admitted(IssueRecord(identity, here, title, date, fingerprint(rendered), signed), warnings)


def _refuse_a_sent_issue_under_a_new_identity(ledger: Ledger, issue_path: Path, here: str, identity: str) -> None:
    """A new identity for a file the ledger knows as a sent issue would mail everyone again."""
    slug = slug_for(issue_path)
    same_file = ledger.issue_sent_from(here)
    if same_file is None and slug != identity and ledger.issue_record(slug) is None and _reached(ledger, slug):
        # Sent by an earlier version, which knew issues by their file name and recorded no path.
        same_file = IssueRecord(slug, here, "", "", "", None)
    if same_file is not None and same_file.issue != identity and _reached(ledger, same_file.issue):
        raise NewsletterError(
            Problem(
                issue_path,
                f"was sent as issue '{same_file.issue}', but is now issue '{identity}': sending it would mail "
                f"everyone again. Put back 'id: {same_file.issue}' to continue that send; if this is a new issue "
                "in an old file, save it under a new name",
            )
        )


def _reached(ledger: Ledger, identity: str) -> int:
    counts = ledger.counts(identity)
    return counts[DeliveryState.SENT] + counts[DeliveryState.SENDING]


def relative(path: Path, root: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
