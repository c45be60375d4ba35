"""`newsletter archive --out DIR`: the web archive as static files."""

from __future__ import annotations

from pathlib import Path

from ..archive import Archive
from ..console import Console, shown_path, warn
from ..project import open_project


def archive_command(out: Path, *, console: Console) -> list[Path]:
    """Write the index, each published issue's page and the feed to `out`; say which issues were left out, and why."""
    project = open_project()
    archive = Archive(project)
    paths = archive.write(out)
    warn(console, archive.warnings)
    for path in paths:
        console.say(shown_path(path))
    return paths
