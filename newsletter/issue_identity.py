"""Which issue a send belongs to, and whether it may go on.

The ledger knows an issue by its identity: the `id:` in its file, or else
the file's name. Once anyone has been sent an issue, a later run must be the
same issue from the same file with the same content, or say plainly that it
is not:

- a file renamed or moved since (`--moved` continues its send from there);
- a copy of it elsewhere, or another issue given the same `id:` (refused:
  they would share one record of who was mailed);
- an issue that looks like one already sent under another identity (the
  same title and date: most likely that file, renamed);
- its content changed since the send began (`--changed-content` sends the
  rest the new version; `status` counts both).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import NewsletterError, Problem
from .ledger import SENDING, SENT, IssueRecord, Ledger
from .render import Rendered
from .unsubscribe import secret_fingerprint


@dataclass(frozen=True)
class Admitted:
    identity: str
    content: str  # fingerprint of what is sent now
    warnings: list[str]


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
    """Check the file against the ledger's record of its issue, then record it; refuses with what to do."""
    issue = rendered.issue
    identity = rendered.identity
    here = relative(issue_path, root)
    content = fingerprint(rendered)
    title, date = issue.title, issue.date.isoformat()
    record = ledger.issue_record(identity)
    counts = ledger.counts(identity)
    reached = counts[SENT] + counts[SENDING]
    warnings: list[str] = []
    if record is None and not reached:
        other = ledger.same_title_and_date(identity, title, date)
        if other is not None:
            explicit = (
                f"its id is '{identity}'" if issue.id else f"it has no id: and so is known by its name, '{identity}'"
            )
            raise NewsletterError(
                Problem(
                    issue_path,
                    f"looks like issue '{other.issue}' (the same title and date), which was sent from {other.path}; "
                    f"but {explicit}, so sending it would mail everyone again. If this file is that issue "
                    f"renamed, add 'id: {other.issue}' to it to continue that send; if it is another issue, "
                    "give it another title or date",
                )
            )
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
        if record.content != content and not changed_content:
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
                "NEWSLETTER_SECRET is not the key the earlier run of this issue signed its links with: the "
                "unsubscribe links already sent stop working wherever only the new key is known"
            )
    ledger.record_issue(
        IssueRecord(identity, here, title, date, content, secret_fingerprint(secret) if secret else None)
    )
    return Admitted(identity, content, warnings)


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
