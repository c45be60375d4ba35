"""The one exception type for problems the user can fix, and where they happened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from .text import printable


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in one place of one file."""

    file: Path | None
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # dotted path inside the file, e.g. items[2].image.alt

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = _shown(self.file)
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class NewsletterError(click.ClickException):
    """Raised for every problem with the user's input or the outside world.

    It carries one or more `Problem`s; the CLI prints each on its own line and
    exits with code 1, never with a traceback.
    """

    exit_code = 1

    def __init__(self, problems: Problem | str | list[Problem]) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def show(self, file=None) -> None:
        # A file name, a list's header or a server's words may hold what a terminal would obey.
        for problem in self.problems:
            click.echo(f"error: {printable(str(problem))}", err=True, file=file)


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is below it, as typed otherwise."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(path)
