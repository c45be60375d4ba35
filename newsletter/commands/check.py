"""`newsletter check`: validate and render an issue, and say what was found."""

from __future__ import annotations

from pathlib import Path

from ..console import Console, warn
from ..errors import NewsletterError
from ..pipeline import Checked, check


def check_command(
    issue: Path, *, console: Console, strict: bool = False, links: bool = False, timeout: float | None = None
) -> Checked:
    """Say that ISSUE is valid, with its warnings; raises NewsletterError listing every error
    (and, when `strict`, every warning). With `links`, every link and image is fetched too (`timeout` seconds
    each), and a dead one is an error."""
    if timeout is not None and not 0 < timeout <= 600:  # nan too: it made every link "dead"
        raise NewsletterError("check: --timeout must be a number of seconds above 0, at most 600")
    checked = check(issue)
    warnings, errors = list(checked.warnings), []
    fetched = ""
    if links:
        from ..link_check import DEFAULT_TIMEOUT, check_links

        report = check_links(checked, timeout=timeout or DEFAULT_TIMEOUT)
        warnings += report.warnings
        errors = report.errors
        fetched = f", {report.checked} link{'s' if report.checked != 1 else ''} fetched" + (
            f", {report.dead} dead" if report.dead else ""
        )
    if strict and warnings:
        raise NewsletterError(errors + warnings)
    warn(console, warnings)
    n = len(warnings)
    console.say(
        f"{issue}: valid, {len(checked.issue.items)} items, HTML {checked.html_bytes / 1024:.1f} KB"
        + (f", {n} warning{'s' if n != 1 else ''}" if n else "")
        + fetched
    )
    if errors:
        raise NewsletterError(errors)
    return checked
