"""The newsletter project: the folder holding `newsletter.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import NewsletterError, Problem
from .model import Site
from .validation import read_site
from .yamlsource import Source

SITE_FILE = "newsletter.yaml"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Project:
    root: Path
    site: Site
    site_source: Source  # where each value of newsletter.yaml was written

    @property
    def site_file(self) -> Path:
        return self.root / SITE_FILE

    @property
    def templates(self) -> Path:
        return templates_for(self.root)

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def issues(self) -> Path:
        return self.root / "issues"


def templates_for(root: Path) -> Path:
    """The project's own templates/, or the shipped ones for a project without."""
    own = root / "templates"
    return own if own.is_dir() else default_templates()


def default_templates() -> Path:
    """Templates shipped in the wheel, or those of the source checkout."""
    for candidate in (PACKAGE_DIR / "default_templates", PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise NewsletterError("no templates/ folder in the project and none shipped with the package")


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds newsletter.yaml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / SITE_FILE).is_file():
            return folder
    return None


def open_project(near: Path | None = None) -> Project:
    """The project around `near` (an issue file or folder), else around the current folder."""
    candidates = []
    if near is not None:
        candidates.append(near if near.is_dir() else near.parent)
    candidates.append(Path.cwd())
    for start in candidates:
        root = find_root(start)
        if root is not None:
            return Project(root, *read_site(root / SITE_FILE))
    where = candidates[0].resolve()
    raise NewsletterError(
        Problem(
            where / SITE_FILE,
            f"no {SITE_FILE} found here or in any folder above; a newsletter project needs one (see the README)",
        )
    )
