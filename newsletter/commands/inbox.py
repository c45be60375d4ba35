"""`newsletter inbox --maildir PATH | --mbox PATH`: act on the bounces and mailed unsubscribes that came back."""

from __future__ import annotations

from pathlib import Path

from ..console import Console
from ..errors import NewsletterError
from ..inbox import Summary, open_maildir, open_mbox, read_mailbox
from ..project import open_project
from ..text import printable


def inbox_command(*, maildir: Path | None, mbox: Path | None, console: Console) -> Summary:
    """Read the mailbox once; one summary line."""
    if (maildir is None) == (mbox is None):
        raise NewsletterError("inbox: give one of --maildir PATH or --mbox PATH")
    project = open_project()
    if maildir is not None:
        box, folder = open_maildir(maildir, project.site.inbox.processed_folder)
        summary = read_mailbox(box, maildir, project.root, project.site, move_to=folder)
    else:
        assert mbox is not None
        summary = read_mailbox(open_mbox(mbox), mbox, project.root, project.site)
    for note in summary.notes:
        console.say(printable(f"inbox: {note}"), err=True)
    console.say(summary.line())
    return summary
