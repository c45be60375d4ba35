"""`newsletter build`: the issue as email.html, email.txt and email.eml."""

from __future__ import annotations

from pathlib import Path

from ..console import Console, shown_path, warn
from ..errors import NewsletterError, Problem
from ..files import write_atomically
from ..message import Composer
from ..personalise import Recipient
from ..pipeline import Checked, check
from ..unsubscribe import secret_warnings, signing_key


def build_command(issue: Path, out: Path | None = None, *, console: Console) -> list[Path]:
    """Write the three files (see `build`) and say where, with their sizes."""
    warn(console, secret_warnings())
    checked, paths = build(issue, out)
    if checked.warnings:
        n = len(checked.warnings)
        console.say(f"{n} warning{'s' if n != 1 else ''}: see newsletter check {issue}", err=True)
    for path in paths:
        console.say(f"{shown_path(path)}  {path.stat().st_size / 1024:.1f} KB")
    return paths


def build(issue_path: Path, out: Path | None = None) -> tuple[Checked, list[Path]]:
    """Write the three files to `out` (default: outbox/<slug>/) and return their paths."""
    checked = check(issue_path)
    folder = out if out is not None else checked.project.outbox / checked.rendered.slug
    copy = Composer.prepare(checked.rendered).personalise(
        Recipient(checked.project.site.sample_recipient), signing_key()
    )
    files = {
        "email.html": copy.html.encode("utf-8"),
        "email.txt": copy.text.encode("utf-8"),
        "email.eml": copy.message(),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NewsletterError(Problem(Path(exc.filename or folder), f"cannot write: {exc.strerror}")) from None
    return checked, [write_atomically(folder / name, data) for name, data in files.items()]
