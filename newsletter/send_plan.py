"""Planning a send: what it is about to do, worked out before anything is sent.

A plan checks the issue, reads who left (`who_left`), claims the project's send ledger
(a second send at the same time is refused, as it would mail the same
people), admits the issue against the ledger's record of it
(`issue_identity`) and records the list in the ledger. Nothing is sent,
reset or recorded of the issue until the send is confirmed
(`delivery.deliver`), so a run answered "no" leaves the next one as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .issue_identity import Admitted, admit
from .ledger import Ledger
from .pipeline import Checked, check
from .state import ledger_path, move_old_ledger, state_folder
from .subscribers import Entry, read_subscribers, read_suppressions
from .suppression_source import fetch_into
from .suppressions import SuppressionStore, store_path
from .unsubscribe import secret_from_env

SUPPRESSION_FILE = "suppressions.csv"
UNCERTAIN_SHOWN = 10  # addresses named in the warning about them; the rest are in `status`


@dataclass(frozen=True)
class Plan:
    """What a send is about to do, for the confirmation prompt. Nothing is sent or reset yet."""

    checked: Checked
    ledger: Ledger  # open and claimed while the plan is in use (see `plan_send`)
    admitted: Admitted  # which issue, which version: recorded once the send is confirmed
    to_send: int
    already_sent: int
    skipped: dict[DeliveryState, int]  # duplicate, invalid, suppressed
    uncertain: list[str]  # addresses left `sending` by an earlier run that died
    failed_before: int
    resend_uncertain: bool = False
    retry_failed: bool = False
    notices: tuple[Problem, ...] = ()  # worth saying before the send starts

    @property
    def identity(self) -> str:
        return self.admitted.identity

    @property
    def skipped_text(self) -> str:
        """Who is never sent this issue, as every message about the send says it: '1 duplicate, 2 invalid'."""
        return ", ".join(f"{n} {state}" for state, n in self.skipped.items() if n) or "none"

    def this_run(self, limit: int | None) -> int:
        """How many this run sends: all it may, or at most `limit`."""
        return min(self.to_send, limit) if limit else self.to_send

    @property
    def warnings(self) -> list[Problem]:
        """What to say before the send starts, whether or not anything is sent."""
        found = list(self.notices)
        if self.uncertain and not self.resend_uncertain:
            named = ", ".join(self.uncertain[:UNCERTAIN_SHOWN])
            more = " ..." if len(self.uncertain) > UNCERTAIN_SHOWN else ""
            found.append(
                Problem(
                    None,
                    f"{len(self.uncertain)} uncertain recipient(s): an earlier run stopped while sending to them, "
                    "so they may or may not have the message. They are not sent again unless you add "
                    f"--resend-uncertain: {named}{more}",
                )
            )
        return found


@contextmanager
def plan_send(
    issue_path: Path,
    to: Path,
    *,
    suppressed: Path | None = None,
    resend_uncertain: bool = False,
    retry_failed: bool = False,
    moved: bool = False,
    changed_content: bool = False,
) -> Iterator[Plan]:
    """Check the issue, record the list in the ledger, and count what a send would do.

    Use it as `with plan_send(...) as plan:`; the ledger is open and claimed
    for this run inside, and closed (its claim released) on leaving, however
    that happens.
    """
    checked = check(issue_path)
    suppressions = who_left(checked, suppressed)
    entries: Iterator[Entry] = read_subscribers(to, suppressions, dedupe=False)  # the ledger finds duplicates
    notices, ledger = open_ledger(checked.project.root)
    with ledger:
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
        uncertain = [email for email, *_ in ledger.rows_in(identity, DeliveryState.SENDING, listed_only=True)]
        to_send = (
            counts[DeliveryState.PENDING]
            + (counts[DeliveryState.SENDING] if resend_uncertain else 0)
            + (counts[DeliveryState.FAILED] if retry_failed else 0)
        )
        yield Plan(
            checked,
            ledger,
            admitted,
            to_send=to_send,
            already_sent=counts[DeliveryState.SENT],
            skipped={k: counts[k] for k in (DeliveryState.DUPLICATE, DeliveryState.INVALID, DeliveryState.SUPPRESSED)},
            uncertain=uncertain,
            failed_before=counts[DeliveryState.FAILED],
            resend_uncertain=resend_uncertain,
            retry_failed=retry_failed,
            notices=(*notices, *admitted.warnings),
        )


def open_ledger(root: Path) -> tuple[list[Problem], Ledger]:
    """The project's send ledger in state/, moving one an earlier version left in outbox/."""
    moved = move_old_ledger(root)
    state_folder(root)
    return ([moved] if moved else []), Ledger(ledger_path(root))


def who_left(checked: Checked, given: Path | None) -> set[str]:
    """Every address no send may mail, as `address_key` writes them: those of the suppression list (the one
    given, or the project's suppressions.csv), of the suppression store, and of the site's
    `suppressions_source`, fetched now (its addresses are recorded in the store).

    Raises NewsletterError when any of them cannot be read: a send that went on would mail people who left.
    """
    keys = read_suppressions(suppression_path(checked, given))
    root = checked.project.root
    source = checked.project.site.suppressions_source
    if source is None and not store_path(root).exists():
        return keys  # nobody recorded yet: a dry run leaves no empty store behind
    with SuppressionStore.open(root) as store:
        if source is not None:
            keys |= fetch_into(store, source).keys
        keys |= store.keys()
    return keys


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
