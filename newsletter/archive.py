"""STAND-IN, to be replaced at merge by ARCHIVE's `newsletter/archive.py` (issue 9).

Only the interface `serve` mounts, as agreed: `Archive(project).page(relative_path)` gives a `Page`
or None (404), where `relative_path` is the path below `archive_url` ("" for the index). It serves
a tiny index and nothing else, so that `serve` and its tests run before the real renderer lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .project import Project


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str


class Archive:
    def __init__(self, project: Project) -> None:
        self.project = project

    def page(self, relative_path: str) -> Page | None:
        if relative_path != "":
            return None
        title = escape(self.project.site.organisation)
        html = f'<!doctype html>\n<html lang="en"><title>{title}: archive</title><h1>{title}</h1></html>\n'
        return Page(html.encode(), "text/html; charset=utf-8")
