"""What the send ledger says, in words for people: `newsletter status`, and the summary a send ends with."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .delivery import Outcome
from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .files import open_regular
from .issue_identity import relative
from .ledger import IssueRecord, Ledger, refuse_an_interrupted_restore
from .project import open_project
from .slug import slug_for
from .state import ledger_path, move_old_ledger
from .suppressions import SuppressionStore, store_path
from .text import printable


@dataclass(frozen=True)
class LedgerReport:
    """The ledger's view of one issue, as `newsletter status` shows it."""

    identity: str  # the issue the ledger's figures are of
    recorded_as: IssueRecord | None  # set when that is not what the file says: its id changed since
    counts: dict[DeliveryState, int]
    failures: list[tuple[str, str, int, int]]
    uncertain: list[tuple[str, str, int, int]]
    invalid: list[tuple[str, str, int, int]]
    versions: list[tuple[str, int, float]]  # (content, recipients, first sent), oldest first
    current: str | None  # the content the latest run sent
    notices: list[Problem]
    feedback: dict[str, int] = field(default_factory=dict)  # `SuppressionStore.issue_feedback` of the issue

    def lines(self) -> list[str]:
        """Counts per state, the versions sent, and who failed, is uncertain or invalid (the notices apart)."""
        out = []
        if self.recorded_as:
            out.append(f"(the ledger's record of issue '{self.recorded_as.issue}', sent from {self.recorded_as.path})")
        out += [f"{state:>10}  {n}" for state, n in self.counts.items()]
        if len(self.versions) > 1 or (self.versions and self.versions[0][0] != self.current):
            out.append("\nversions sent (the issue changed during its send):")
            for content, n, first in self.versions:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(first))
                current = ", the current one" if content == self.current else ""
                out.append(f"  {content}  {n} recipients, from {when}{current}")
        out += self._feedback_lines()
        for title, rows in (
            (DeliveryState.FAILED, self.failures),
            ("uncertain (may or may not have it)", self.uncertain),
            (DeliveryState.INVALID, self.invalid),
        ):
            if rows:
                out.append(f"\n{title}:")
                for email, reply, attempts, line in rows:
                    shown = printable(email) if email else "(empty)"
                    out.append(f"  {shown}  (list line {line}, {attempts} attempts): {printable(reply)}")
        return out

    def _feedback_lines(self) -> list[str]:
        """Bounces and unsubscribes that came back for the issue, and the bounce rate over those it was sent to."""
        f = self.feedback
        if not f:
            return []
        sent = self.counts.get(DeliveryState.SENT, 0)
        rate = f"{100 * f['bounced'] / sent:.1f}% of {sent} sent" if sent else "nothing sent"
        return [
            f"\nbounces: {f['hard']} hard, {f['soft']} soft (bounce rate {rate})",
            f"unsubscribes: {f['one-click']} one-click, {f['page']} page, {f['mailto']} mailto",
        ]


def ledger_report(issue_path: Path) -> LedgerReport:
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
        return LedgerReport(
            identity,
            record if record and record.issue != declared else None,
            ledger.counts(identity),
            ledger.rows_in(identity, DeliveryState.FAILED),
            ledger.rows_in(identity, DeliveryState.SENDING),
            ledger.rows_in(identity, DeliveryState.INVALID),
            ledger.versions(identity),
            record.content if record else None,
            notices,
            _feedback(root, identity),
        )


def _feedback(root: Path, issue: str) -> dict[str, int]:
    """The suppression store's figures for the issue; none when there is no store (nothing came back yet)."""
    if not store_path(root).exists():
        return {}
    with SuppressionStore.open(root) as store:
        return store.issue_feedback(issue)


def _declared_id(issue_path: Path) -> str | None:
    """The file's `id:`, read leniently: status must work on an issue that no longer validates."""
    from .yamlsource import load

    try:
        data = load(issue_path, "issue file").data
    except NewsletterError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


@dataclass(frozen=True)
class SendReport:
    """What a send did, said as it ends: this run's figures, the ledger's, and whether the send must exit 1."""

    issue: Path
    outcome: Outcome
    counts: Mapping[DeliveryState, int]  # the ledger's, for the list given to this run
    skipped: str  # who is never sent this issue (`Plan.skipped_text`)
    resume: str  # the command that continues the send

    def summary(self) -> str:
        outcome, counts = self.outcome, self.counts
        return (
            f"sent {outcome.sent}, failed {outcome.failed}"
            + (f", uncertain {outcome.uncertain}" if outcome.uncertain else "")
            + (f", {outcome.suppressed} left during the send" if outcome.suppressed else "")
            + f" in {outcome.elapsed:.1f} s; "
            f"in all: {counts[DeliveryState.SENT]} sent, {counts[DeliveryState.FAILED]} failed, "
            f"{counts[DeliveryState.PENDING]} still to send, {counts[DeliveryState.SENDING]} uncertain, "
            f"skipped: {self.skipped}"
        )

    def slowed(self) -> str | None:
        """When the relay asked the send to slow down: how often, and the pace it ended at (a hint for the next
        send's --connections and --rate)."""
        n = self.outcome.slowed
        if not n:
            return None
        return f"the relay asked {n} time{'s' if n != 1 else ''} to slow down; the pace at the end: {self.outcome.pace}"

    def problem(self) -> NewsletterError | None:
        """Why the send exits 1: it stopped or was interrupted (how to resume), or someone of this run was missed."""
        outcome = self.outcome
        if outcome.interrupted:
            return NewsletterError(
                f"interrupted after the messages in flight were finished; resume with: {self.resume}"
            )
        if outcome.stopped:
            return NewsletterError(
                f"stopped: {printable(outcome.stopped)}. Nothing more was sent; fix the problem, then resume with: "
                f"{self.resume}"
            )
        if outcome.failed or outcome.uncertain:  # not everyone of this run got it: say so, in the exit code too
            missed = f"{outcome.failed} failed" + (f", {outcome.uncertain} uncertain" if outcome.uncertain else "")
            return NewsletterError(f"{missed}: see newsletter status {self.issue}")
        return None

    def hint(self) -> str | None:
        """For a send that went well: where to see failures earlier runs left."""
        return f"see the failures with: newsletter status {self.issue}" if self.counts[DeliveryState.FAILED] else None


def resume_command(issue: Path, to: Path, suppressed: Path | None) -> str:
    """The command that continues a send, quoted for a shell, with the list of who left."""
    words = ["newsletter", "send", str(issue), "--to", str(to)]
    if suppressed is not None:
        words += ["--suppressed", str(suppressed)]
    return shlex.join(words)
