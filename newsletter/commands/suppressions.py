"""`newsletter suppressions`: the suppression store by hand: list, add, remove, import, export.

The store is the project's (`state/suppressions.sqlite3`, found from the
current folder as every command finds its project); `send` skips everyone
in it, as it skips the project's `suppressions.csv`, `--suppressed FILE`
and the site's `suppressions_source`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..console import Console, shown_path
from ..errors import NewsletterError, Problem
from ..project import open_project
from ..send_plan import SUPPRESSION_FILE
from ..subscribers import (
    address_key,
    read_suppression_addresses,
    read_suppressions,
    suppression_address,
    suppression_address_problem,
)
from ..suppressions import SuppressionStore, Why, parse_when
from ..text import printable


def list_command(*, console: Console) -> int:
    """Show every suppressed address with when, why and the issue, oldest first; how many."""
    n = 0
    with _store() as store:
        for row in store.rows():
            n += 1
            console.say(printable(f"{row.email}  {row.when}  {row.why}  {row.issue or '-'}"))
    console.say(f"{n} suppressed address{'es' if n != 1 else ''}", err=True)
    return n


def show_command(addresses: list[str], *, console: Console) -> int:
    """Say of each address whether it is suppressed, why, and on what evidence: each decision `inbox` recorded
    about it (a bounce's status and diagnostic, the message's Message-ID, date and sender), so that a wrong call
    can be seen before it is undone with `remove`; how many are suppressed."""
    project = open_project()
    found = 0
    with SuppressionStore.open(project.root) as store:
        for value in addresses:
            row = store.get(value)
            found += row is not None
            said = f"suppressed {row.when}  {row.why}  {row.issue or '-'}" if row else "not suppressed"
            console.say(printable(f"{row.email if row else value.strip()}  {said}"))
            score = store.score(value, project.site.inbox.score_resets_after_days)
            if score and row is None:  # on the way to being suppressed by soft bounces
                console.say(f"  bounce score {score:g} (suppressed at {project.site.inbox.soft_bounce_threshold:g})")
            for _, _, kind, issue, _, evidence in store.decisions(value):
                console.say(printable(f"  {kind}  {issue or '-'}  {_evidence(evidence)}"))
    return found


def _evidence(facts: dict) -> str:
    """What `inbox` decided on, in one line: what the server said, and which message said it."""
    said = " ".join(str(facts[k]) for k in ("status", "diagnostic") if facts.get(k))
    matched = f" (matched by {facts['matched']})" if facts.get("matched") else ""
    message = f"message {facts.get('message_id') or '(no Message-ID)'} of {facts.get('date') or '(no date)'}"
    return f"{said + '; ' if said else ''}{message} from {facts.get('from') or '(no sender)'}{matched}"


def add_command(addresses: list[str], *, console: Console) -> int:
    """Record each address as left by hand (`manual`); how many were new. None is added if any is not an address."""
    problems = [
        Problem(None, f"add: {problem}")
        for value in addresses
        if (problem := suppression_address_problem(value.strip()))
    ]
    if problems:
        raise NewsletterError(problems)
    new = 0
    with _store() as store:
        for value in addresses:
            address = suppression_address(value.strip())
            if store.add(address, Why.MANUAL):
                new += 1
                console.say(printable(f"added {address}"))
            else:
                console.say(printable(f"already suppressed: {address}"))
    return new


def remove_command(addresses: list[str], *, console: Console) -> int:
    """Take each address off the store, saying which were not in it; how many were removed."""
    root = open_project().root
    listed = _project_list(root)
    removed = 0
    with SuppressionStore.open(root) as store:
        for value in addresses:
            address = suppression_address(value.strip())
            if store.remove(address):
                removed += 1
                console.say(printable(f"removed {address}"))
            else:
                console.say(printable(f"not suppressed: {address}"))
            if address_key(address) in listed:
                # The file is read at every send as it is: taking the address off the store does not let it through.
                console.say(
                    printable(f"warning: {address} is still in {SUPPRESSION_FILE}, so send still skips it"), err=True
                )
    return removed


def import_command(path: Path, *, console: Console) -> int:
    """Add every address of a suppression list (CSV with an email column, or one address a line); how many were new."""
    if not path.exists():
        raise NewsletterError(Problem(path, "no such file"))
    # Read once, every bad line refused with its number before anything is recorded; each address kept as written.
    found = read_suppression_addresses(path)
    total = len({address_key(address) for address in found})
    with _store() as store:
        new = store.add_many(found)
    addresses = f"{total} address{'es' if total != 1 else ''}"
    console.say(printable(f"imported {shown_path(path)}: {new} new, {total - new} already suppressed ({addresses})"))
    return new


def export_command(out: TextIO, *, since: str | None = None, console: Console) -> int:
    """Write the store as CSV (email, when, why, issue) to `out`, only what was recorded since `since` if given."""
    start = parse_since(since) if since is not None else None
    with _store() as store:
        n = store.export_csv(out, start)
    console.say(f"exported {n} suppressed address{'es' if n != 1 else ''}", err=True)
    return n


def parse_since(value: str) -> float:
    """`2026-01-01` (midnight UTC) or an ISO 8601 date-time (UTC unless it names its offset), as epoch seconds."""
    when = parse_when(value)
    if when is None:
        raise NewsletterError(
            f"--since: '{printable(value)}' is not a date or a time; write 2026-01-01 or 2026-01-01T09:30:00+02:00"
        )
    return when


def _store() -> SuppressionStore:
    return SuppressionStore.open(open_project().root)


def _project_list(root: Path) -> set[str]:
    path = root / SUPPRESSION_FILE
    try:
        return read_suppressions(path)
    except NewsletterError:
        return set()  # a broken file is `send`'s to report; here it only adds a warning
