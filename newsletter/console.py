"""What a command needs of the person running it: a place to say things, a question, a password, progress.

The command line gives Click's terminal (`__main__`); a test or another
program gives its own. Commands decide what is said and asked; a console
only shows and asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from .errors import Problem
from .text import printable


class Console(Protocol):
    def say(self, line: str, *, err: bool = False) -> None:
        """Show a line: the command's output, or with `err` a message beside it (a warning, a hint)."""
        ...

    def confirm(self, question: str) -> bool:
        """Ask yes or no."""
        ...

    def ask_password(self, prompt: str) -> str | None:
        """A password typed without being shown; None when there is no one to ask (input is not a terminal)."""
        ...

    def progress(
        self, total: int, label: str, status: Callable[[], str] | None = None
    ) -> AbstractContextManager[Callable[[int], None]]:
        """Show progress towards `total` while the block runs; the callable is told how many more are done.
        `status`, when given, says more each time the progress is shown (the pace of a send)."""
        ...


def warn(console: Console, problems: Iterable[Problem]) -> None:
    # A file name, a list's row or a server's words may hold what a terminal would obey.
    for problem in problems:
        console.say(f"warning: {printable(str(problem))}", err=True)


def shown_path(path: Path) -> str:
    """`path` relative to the current folder when it is below it, as given otherwise."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
