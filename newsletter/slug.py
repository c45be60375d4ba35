"""The issue's name (its slug): the issue file's name without `.yaml`, and the folder it builds into.

One rule for every command: `new` writes `issues/<slug>.yaml`, and `build` and
`send --dry-run` write into `outbox/<slug>/`, so a name like `..` would write
outside the outbox.
"""

from __future__ import annotations

from pathlib import Path

from .errors import NewsletterError, Problem
from .text import NOT_TEXT, describe, printable

MAX_LENGTH = 100  # a folder name, a part of every Message-ID, a key people type


def why_not_a_name(name: str) -> str | None:
    """Why `name` cannot name an issue, or None when it is a plain name."""
    if not name:
        return "it is empty"
    if len(name) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if name.startswith("."):  # also '.' and '..'; and hidden files are easy to lose
        return "it starts with '.'"
    for slash in "/\\":
        if slash in name:
            return f"it contains '{slash}'"
    # Letters of any script are fine: issue names like "été 2021" work.
    found = NOT_TEXT.search(name)
    if found:
        return f"it contains {describe(found[0])}"
    return None


def slug_for(path: Path) -> str:
    """The issue name of the file at `path`; NewsletterError (naming the file) when it is not a plain name."""
    slug = path.name.removesuffix(".yaml").removesuffix(".yml")
    reason = why_not_a_name(slug)
    if reason:
        raise NewsletterError(Problem(path, f"{shown(slug)} cannot be an issue name: {reason}; rename the file"))
    return slug


def shown(name: str) -> str:
    """`name` in quotes, with what would upset a terminal written as escapes."""
    return f"'{printable(name)}'"
