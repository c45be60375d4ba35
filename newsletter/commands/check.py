"""`newsletter check`: validate and render an issue, and say what was found."""

from __future__ import annotations

from pathlib import Path

from ..console import Console, warn
from ..errors import NewsletterError
from ..pipeline import Checked, check


def check_command(issue: Path, *, console: Console, strict: bool = False) -> Checked:
    """Say that ISSUE is valid, with its warnings; raises NewsletterError listing every error
    (and, when `strict`, every warning)."""
    checked = check(issue)
    if strict and checked.warnings:
        raise NewsletterError(checked.warnings)
    warn(console, checked.warnings)
    n = len(checked.warnings)
    console.say(
        f"{issue}: valid, {len(checked.issue.items)} items, HTML {checked.html_bytes / 1024:.1f} KB"
        + (f", {n} warning{'s' if n != 1 else ''}" if n else "")
    )
    return checked
