"""`newsletter inbox [--maildir PATH | --mbox PATH | --ca-file PEM] [--watch]`: act on the bounces and mailed
unsubscribes that came back, once or, with `--watch`, as they come until Ctrl-C. Without --maildir or --mbox, the
IMAP mailbox of newsletter.yaml's `inbox:` section."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from .. import imap
from ..connection import ConnectFailed
from ..console import Console
from ..errors import NewsletterError
from ..inbox import Decision, MailboxGone, Source, Summary, open_maildir, open_mbox, read_mailbox
from ..project import open_project
from ..text import printable


def inbox_command(
    *,
    maildir: Path | None,
    mbox: Path | None,
    console: Console,
    watch: bool = False,
    every: float = 60.0,
    ca_file: Path | None = None,
) -> Summary | None:
    """Read the mailbox once, one summary line; or with `watch`, every `every` seconds, a line per decision as it
    is recorded, until Ctrl-C."""
    if maildir is not None and mbox is not None:
        raise NewsletterError("inbox: give one of --maildir PATH or --mbox PATH, not both")
    if ca_file is not None and (maildir or mbox):
        raise NewsletterError("inbox: --ca-file is for an IMAP server, not for a --maildir or an --mbox")
    if not 0 < every <= 86400:  # nan too
        raise NewsletterError("inbox: --every must be a number of seconds above 0, at most a day (86400)")
    project = open_project()
    settings = None
    if maildir is None and mbox is None:
        settings = imap.settings_from(project.site.inbox, project.site_file, ca_file)

    @contextlib.contextmanager
    def source() -> Iterator[Source]:
        if maildir is not None:
            yield open_maildir(maildir, project.site.inbox.processed_folder)
        elif mbox is not None:
            yield open_mbox(mbox)
        else:
            assert settings is not None
            with imap.open_mailbox(settings, project.site_file) as mailbox:
                yield mailbox

    def read_once(on_decision=None) -> Summary:
        with source() as found:
            summary = read_mailbox(found, project.root, project.site, on_decision=on_decision)
        for note in summary.notes:
            console.say(printable(f"inbox: {note}"), err=True)
        return summary

    if not watch:
        summary = read_once()
        console.say(summary.line())
        return summary

    def tell(decision: Decision) -> None:
        who = printable(decision.email) if decision.email else "-"
        console.say(f"{who}  {decision.kind}  {printable(decision.issue) if decision.issue else '-'}")

    where = str(maildir or mbox or "") or f"{settings.folder} of {settings.username} on {settings.address}"
    console.say(f"inbox: watching {printable(where)} every {every:g} s; Ctrl-C to stop")
    read_before = False
    try:
        while True:
            try:
                read_once(tell)
                read_before = True
            except (ConnectFailed, MailboxGone) as exc:
                # A refused login or an untrusted certificate does not mend by waiting, nor a mailbox never there
                # (a typo); one that was read before and went away may be being made again (moved, restored).
                if not (exc.retry if isinstance(exc, ConnectFailed) else read_before):
                    raise
                console.say(f"inbox: {printable(str(exc))}; trying again in {every:g} s", err=True)
            time.sleep(every)
    except KeyboardInterrupt:
        # A decision is recorded in one transaction before its message moves: one cut short is read again next run.
        console.say("stopped")
    return None
