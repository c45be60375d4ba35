"""`newsletter inbox --maildir PATH | --mbox PATH [--watch]`: act on the bounces and mailed unsubscribes that
came back, once or, with `--watch`, as they come until Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path

from ..console import Console
from ..errors import NewsletterError
from ..inbox import Decision, Summary, open_maildir, open_mbox, read_mailbox
from ..project import open_project
from ..text import printable


def inbox_command(
    *, maildir: Path | None, mbox: Path | None, console: Console, watch: bool = False, every: float = 60.0
) -> Summary | None:
    """Read the mailbox once, one summary line; or with `watch`, every `every` seconds, a line per decision as it
    is recorded, until Ctrl-C."""
    if (maildir is None) == (mbox is None):
        raise NewsletterError("inbox: give one of --maildir PATH or --mbox PATH")
    if every <= 0:
        raise NewsletterError("inbox: --every must be a number of seconds above 0")
    project = open_project()

    def read_once(on_decision=None) -> Summary:
        if maildir is not None:
            source = open_maildir(maildir, project.site.inbox.processed_folder)
        else:
            assert mbox is not None
            source = open_mbox(mbox)
        summary = read_mailbox(source, project.root, project.site, on_decision=on_decision)
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

    console.say(f"inbox: watching {printable(str(maildir or mbox))} every {every:g} s; Ctrl-C to stop")
    try:
        while True:
            read_once(tell)
            time.sleep(every)
    except KeyboardInterrupt:
        # A decision is recorded in one transaction before its message moves: one cut short is read again next run.
        console.say("stopped")
    return None
