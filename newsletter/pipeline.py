"""From an issue file to a checked, rendered issue: what check, build and preview share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import NewsletterError, Problem
from .lint import lint, share_warnings
from .message import Composer
from .message_lint import message_lint
from .model import Issue
from .personalise import Recipient
from .project import Project, open_project
from .render import Rendered, render
from .slug import slug_for
from .unsubscribe import PREVIEW_SECRET
from .validation import load_issue
from .yamlsource import Source


@dataclass(frozen=True)
class Checked:
    project: Project
    issue: Issue
    source: Source
    rendered: Rendered
    warnings: list[Problem]
    html_bytes: int  # the HTML part for a typical subscriber, as a mail client receives it


def check(path: Path, *, web: bool = False) -> Checked:
    """Validate and render the issue at `path` (with `web`, as its archive page); NewsletterError lists all problems."""
    problems: list[Problem] = []
    project = issue = source = slug = None
    try:
        slug = slug_for(path)
    except NewsletterError as exc:
        problems += exc.problems
    try:
        project = open_project(path)
    except NewsletterError as exc:
        problems += exc.problems
    try:
        issue, source = load_issue(path)
    except NewsletterError as exc:
        problems += exc.problems
    if problems or project is None or issue is None or source is None or slug is None:
        raise NewsletterError(problems)
    rendered = render(issue, project.site, slug, project.templates, web=web)
    # One subscriber's copy, built as `send` builds it, for what the warnings say of the message.
    copy = Composer.prepare(rendered).personalise(TYPICAL_SUBSCRIBER, PREVIEW_SECRET)
    html_bytes = len(copy.html.encode("utf-8"))
    warnings = lint(issue, source, html_bytes, project.site) + share_warnings(issue, source, project.site)
    if not web:  # the archive's page is no message
        warnings += message_lint(copy, source, project.site_source, project.templates)
    # The issue's own first, then newsletter.yaml's and the templates', each file's in the order of its lines.
    warnings.sort(key=lambda p: (p.file != source.path, str(p.file or ""), p.line or 0, p.column or 0))
    return Checked(project, issue, source, rendered, warnings, html_bytes)


# A realistic length for each slot, so that the size check is honest; a name that headers must encode and fold.
TYPICAL_SUBSCRIBER = Recipient("firstname.lastname@example.org", "Marie-Ève Lefèvre-Nguyễn")
