"""The issue's name (its slug): the issue file's name without `.yaml`, and the folder it builds into.

One rule for every command: `new` writes `issues/<slug>.yaml`, and `build` and
`send --dry-run` write into `outbox/<slug>/`, so a name like `..` would write
outside the outbox.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import NewsletterError, Problem

# Control characters (C0, DEL, C1), line and paragraph separators, lone surrogates
# (how Python carries a file name's undecodable bytes) and the two non-characters
# YAML refuses. Letters of any script are fine: issue names like "été 2021" work.
_NOT_IN_A_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


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
    found = _NOT_IN_A_NAME.search(name)
    if found:
        return "it is not valid UTF-8" if "\ud800" <= found[0] <= "\udfff" else "it contains a control character"
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
    return "'" + _NOT_IN_A_NAME.sub(lambda m: repr(m[0])[1:-1], name) + "'"
