"""From an issue file to a checked, rendered issue: what check, build and preview share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import NewsletterError, Problem
from .lint import lint, share_warnings
from .model import Issue
from .project import Project, open_project
from .render import Rendered, render
from .slug import slug_for
from .unsubscribe import PREVIEW_SECRET, unsubscribe_url
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
    html_bytes = len(rendered.html.fill(_typical_values(rendered)).encode("utf-8"))
    warnings = lint(issue, source, html_bytes) + share_warnings(issue, source, project.site)
    return Checked(project, issue, source, rendered, warnings, html_bytes)


def _typical_values(rendered: Rendered) -> dict[str, str]:
    # A realistic length for each slot, so that the size check is honest.
    return {
        "name": "Firstname Lastname",
        "email": "firstname.lastname@example.org",
        "unsubscribe_url": unsubscribe_url(
            rendered.site.unsubscribe_url,
            PREVIEW_SECRET,
            rendered.site.list_identifier,
            "firstname.lastname@example.org",
        ),
    }
