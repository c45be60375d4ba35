"""The subscriber list (CSV) and the suppression list, read as a stream.

Each row becomes an `Entry` saying whether it is to be sent, or why not
(invalid address, duplicate, suppressed), so that 100,000 rows never sit in
memory at once. Finding duplicates needs the addresses seen so far: a set
here, or (`dedupe=False`) the send ledger's own table.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import NewsletterError, Problem
from .model import is_email_address
from .yamlsource import MAX_BYTES

PENDING, DUPLICATE, INVALID, SUPPRESSED = "pending", "duplicate", "invalid", "suppressed"
MAX_NAME = 200


@dataclass(frozen=True)
class Entry:
    line: int  # in the CSV file, 1-based, counting the header
    email: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)
    state: str = PENDING
    reason: str = ""

    @property
    def key(self) -> str:
        """Two rows whose addresses differ only in letter case are one subscriber."""
        return self.email.lower()


def read_suppressions(path: Path | None) -> set[str]:
    """Addresses that must not be mailed: one per line, or a CSV with an `email` column."""
    if path is None or not path.exists():
        return set()
    text = _read(path)
    lines = text.splitlines()
    header = [c.strip().lower() for c in next(csv.reader([lines[0]]))] if lines else []
    if "email" in header:
        column = header.index("email")  # "Email", " email " and the like all count
        rows = csv.reader(lines[1:])
        return {row[column].strip().lower() for row in rows if len(row) > column and row[column].strip()}
    return {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


def read_subscribers(path: Path, suppressed: set[str] | None = None, *, dedupe: bool = True) -> Iterator[Entry]:
    """Every row of the list, classified. Raises NewsletterError if the file itself is unusable."""
    suppressed = suppressed or set()
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise NewsletterError(Problem(path, "no such subscriber list")) from None
    except OSError as exc:
        raise NewsletterError(Problem(path, f"cannot read: {exc.strerror}")) from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = [h.strip() for h in (reader.fieldnames or [])]
        except UnicodeDecodeError:
            raise NewsletterError(Problem(path, "not valid UTF-8; save the list as UTF-8 CSV", 1)) from None
        if "email" not in header:
            raise NewsletterError(
                Problem(path, f"the header must have an 'email' column (it has: {', '.join(header) or 'nothing'})", 1)
            )
        reader.fieldnames = header
        seen: set[str] = set()
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                yield _classify(row, line, seen if dedupe else None, suppressed)
        except UnicodeDecodeError:
            raise NewsletterError(Problem(path, "not valid UTF-8; save the list as UTF-8 CSV", line + 1)) from None
        except csv.Error as exc:
            raise NewsletterError(Problem(path, f"not a readable CSV file: {exc}", line + 1)) from None


def _classify(
    row: dict[str | None, str | list[str] | None], line: int, seen: set[str] | None, suppressed: set[str]
) -> Entry:
    fields = {k: (v if isinstance(v, str) else "").strip() for k, v in row.items() if isinstance(k, str) and k}
    email = fields.get("email", "")
    name = fields.get("name", "")
    if not is_email_address(email):
        return Entry(
            line, email, name, fields, INVALID, f"'{email}' is not an email address" if email else "no address"
        )
    if "\r" in name or "\n" in name:  # it goes into the To header
        return Entry(line, email, name, fields, INVALID, "the name contains a line break")
    if len(name) > MAX_NAME:  # a To header line must stay under SMTP's 998 characters
        return Entry(line, email, name, fields, INVALID, f"the name is longer than {MAX_NAME} characters")
    entry = Entry(line, email, name, fields)
    if seen is not None:
        if entry.key in seen:
            return duplicate(entry)
        seen.add(entry.key)
    if entry.key in suppressed:
        return Entry(line, email, name, fields, SUPPRESSED, "on the suppression list")
    return entry


def duplicate(entry: Entry) -> Entry:
    return replace(entry, state=DUPLICATE, reason="listed before")


def _read(path: Path) -> str:
    if path.stat().st_size > 50 * MAX_BYTES:
        raise NewsletterError(Problem(path, "too large for a suppression list"))
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise NewsletterError(Problem(path, "not valid UTF-8")) from None
