"""The subscriber list and the suppression list, in the shapes people export them.

Both lists are read by one rule:

- The first line that is neither blank nor a `#` comment decides the shape.
  If it names the address column (`email`, `Email`, `Email Address`,
  `E-mail`: letter case, spaces, hyphens and underscores do not matter), it
  is a CSV header, and the delimiter is the first of comma, semicolon and
  tab that leaves that name a column of its own (Excel writes semicolons
  in French locales). A header naming one column twice (`email,Email`,
  `City,city`, two address columns) is refused: which one counts would be
  a guess. If the first line is an address instead, the file is a plain
  list: one address per line, blank lines and `#` comments allowed.
- An address may carry a display name and quotes, `Ann Smith
  <ann@example.com>` or `"ann@example.com"`; `email.utils` takes them apart.

The subscriber list is streamed: each row becomes an `Entry` saying whether
it is to be sent, or why not (invalid address, duplicate, suppressed), so
that 100,000 rows never sit in memory at once. Finding duplicates needs the
addresses seen so far: a set here, or (`dedupe=False`) the send ledger's own
table. The suppression list is read into a set; a line of it that holds no
address stops everything with FILE:LINE, as skipping it could mail someone
who left.

Neither list is ever read without a bound: an endless file (`/dev/zero`, a
FIFO) ends in an error naming it, not in a hang or a full memory.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.utils import getaddresses
from itertools import chain
from pathlib import Path
from typing import TextIO

from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .files import open_regular
from .model import is_email_address
from .text import NOT_TEXT, describe, printable
from .yamlsource import MAX_BYTES

MAX_NAME = 200
MAX_LINE = 1_000_000  # characters; no real row comes near, and /dev/zero never ends its first line
MAX_LIST_CHARS = 1_000_000_000  # some 5 million rows; only an endless stream gets there
MAX_SUPPRESSION_BYTES = 50 * MAX_BYTES
MAX_PROBLEMS = 20  # a wrong file gets its first few bad lines shown, not a hundred thousand

# Column names as `_key` spells them.
ADDRESS_COLUMNS = frozenset({"email", "e_mail", "email_address", "e_mail_address"})
NAME_COLUMNS = ("name", "full_name", "fullname")
FIRST_NAME_COLUMNS = ("first_name", "firstname")
LAST_NAME_COLUMNS = ("last_name", "lastname")
DELIMITERS = (",", ";", "\t")

# What a suppression line must at least look like: one @, and nothing that
# separates fields or addresses. Looser than `is_email_address` on purpose:
# an address the tool would never send to is harmless in a suppression list,
# while a line like `ann@example.com;2021-05-01` shows a misread file.
_ONE_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+")


@dataclass(frozen=True)
class Entry:
    line: int  # in the CSV file, 1-based, counting the header
    email: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)
    state: DeliveryState = DeliveryState.PENDING
    reason: str = ""

    @property
    def key(self) -> str:
        """Two rows whose addresses differ only in letter case are one subscriber."""
        return address_key(self.email)


@dataclass(frozen=True)
class _Row:
    """One line (or quoted multi-line row) of either list, before any judgement."""

    line: int  # where the row starts
    address: str  # as written: display name, quotes and all
    name: str
    fields: dict[str, str]
    column: str  # the address column's name in the header, "" in a plain list


def read_suppressions(path: Path | None) -> set[str]:
    """Addresses that must not be mailed, as `address_key` writes them.

    Every address listed counts, whatever the other columns say. Raises
    NewsletterError for an unreadable file and for each line (the first
    few) that holds no address.
    """
    return {address_key(address) for address in read_suppression_addresses(path)}


def read_suppression_addresses(path: Path | None) -> list[str]:
    """The addresses of a suppression list in file order, each as written (a display name dropped); as
    `read_suppressions`, which compares them, reads and refuses them."""
    if path is None or not path.exists():
        return []
    found: list[str] = []
    problems: list[Problem] = []
    for row in _rows(path, io.StringIO(_read_bounded(path), newline=""), empty_ok=True):
        address = _split(row.address)[1]
        if not address:
            problem = f"no address in column '{row.column}'"
        elif problem := suppression_address_problem(row.address):
            pass
        else:
            found.append(address)
            continue
        problems.append(Problem(path, problem, row.line))
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems[MAX_PROBLEMS:] = [Problem(path, f"and {more} more lines that hold no address")]
    if problems:
        raise NewsletterError(problems)
    return found


def suppression_address_problem(value: str) -> str | None:
    """Why `value` (`ann@example.com`, `Ann <ann@example.com>`) is not one address of a suppression list, if not.

    The rule of a suppression list's lines, for every way an address gets into the store.
    """
    address = _split(value)[1]
    if control := _address_control(address):
        return control
    if not _ONE_ADDRESS.fullmatch(address):
        return f"'{_shown(value)}' is not an email address"
    return None


def suppression_address(value: str) -> str:
    """The address of a suppression line that `suppression_address_problem` accepts (the display name dropped)."""
    return _split(value)[1]


def read_subscribers(path: Path, suppressed: set[str] | None = None, *, dedupe: bool = True) -> Iterator[Entry]:
    """Every row of the list, classified. Raises NewsletterError if the file itself is unusable.

    Templates see every column as `subscriber.<column>`, under its name as
    written and as `_key` spells it (`First Name` is also `first_name`). The
    address is `email` and the name is `name` whatever the columns are
    called: the name is the `Name` (or `Full name`) column, else `First
    name` and `Last name` joined, else the display name written with the
    address. A tab in a name becomes a space: in a header it is only white
    space, not worth losing a subscriber over.
    """
    suppressed = suppressed or set()
    handle = io.TextIOWrapper(open_regular(path, "subscriber list"), encoding="utf-8-sig", newline="")
    with handle:
        seen: set[str] = set()
        for row in _rows(path, handle, empty_ok=False):
            yield _classify(row, seen if dedupe else None, suppressed)


def _classify(row: _Row, seen: set[str] | None, suppressed: set[str]) -> Entry:
    display, email = _split(row.address)
    name = (row.name or display).replace("\t", " ").strip()

    def invalid(reason: str) -> Entry:
        # Kept only to be shown (`newsletter status`): never an escape sequence for the terminal.
        return Entry(row.line, printable(row.address), printable(name), row.fields, DeliveryState.INVALID, reason)

    if not email:
        return invalid("no address")
    if control := _address_control(email):
        return invalid(control)
    if not is_email_address(email):
        return invalid(f"'{_shown(row.address)}' is not an email address")
    # Nothing that is not text (NOT_TEXT): it goes into the To header.
    if control := NOT_TEXT.search(name):
        return invalid(f"the name contains {describe(control.group())}")
    if len(name) > MAX_NAME:  # a To header line must stay under SMTP's 998 characters
        return invalid(f"the name is longer than {MAX_NAME} characters")
    entry = Entry(row.line, email, name, row.fields)
    if seen is not None:
        if entry.key in seen:
            return duplicate(entry)
        seen.add(entry.key)
    if entry.key in suppressed:
        return replace(entry, state=DeliveryState.SUPPRESSED, reason="on the suppression list")
    return entry


def duplicate(entry: Entry) -> Entry:
    return replace(entry, state=DeliveryState.DUPLICATE, reason="listed before")


# -- reading either list -------------------------------------------------------


def _rows(path: Path, handle: TextIO, *, empty_ok: bool) -> Iterator[_Row]:
    lines = _lines(path, handle)
    number = 0
    for first in lines:
        number += 1
        if first.strip() and not first.lstrip().startswith("#"):
            break
    else:
        if not empty_ok:
            raise NewsletterError(Problem(path, "is empty: it needs a header naming the address column, or addresses"))
        return
    header = _Header.read(path, first, number)
    if header is None:
        yield from _plain(chain([first], lines), number)
    else:
        yield from header.rows(path, lines, number)


def _lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The file's lines, each read with a bound, so that no stream is ever read whole."""
    number = total = 0
    while True:
        try:
            line = handle.readline(MAX_LINE + 1)
        except UnicodeDecodeError:
            raise NewsletterError(Problem(path, "not valid UTF-8; save the list as UTF-8", number + 1)) from None
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise NewsletterError(
                Problem(path, f"a line longer than {MAX_LINE:,} characters: is this the right file?", number)
            )
        total += len(line)
        if total > MAX_LIST_CHARS:
            raise NewsletterError(
                Problem(path, f"the list is longer than {MAX_LIST_CHARS:,} characters: is this the right file?", number)
            )
        yield line


def _plain(lines: Iterable[str], first: int) -> Iterator[_Row]:
    for number, line in enumerate(lines, start=first):
        value = line.strip()
        if value and not value.startswith("#"):
            yield _Row(number, value, "", {}, "")


@dataclass(frozen=True)
class _Header:
    delimiter: str
    columns: list[str]
    keys: list[str]
    address: int
    name: int | None
    first_name: int | None
    last_name: int | None

    @classmethod
    def read(cls, path: Path, line: str, number: int) -> _Header | None:
        """The header on `line`; None if `line` is the first address of a plain list."""
        found: tuple[str, list[str], list[str]] | None = None
        widest: list[str] = []
        for delimiter in DELIMITERS:
            try:
                cells = [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]
            except csv.Error as exc:
                raise NewsletterError(Problem(path, f"not a readable CSV file: {exc}", number)) from None
            keys = [_key(c) for c in cells]
            widest = max(widest, cells, key=len)
            # A wrong delimiter glues the address column's name to its
            # neighbour's (`email;name` split at commas), so the first
            # delimiter that leaves it whole is the one.
            if ADDRESS_COLUMNS.intersection(keys):
                found = (delimiter, cells, keys)
                break
        if found is None:
            if _ONE_ADDRESS.fullmatch(_split(line.strip())[1]):
                return None
            raise NewsletterError(
                Problem(
                    path,
                    "the first line must name the address column (email, Email Address, E-mail) or be an address; "
                    f"it has: {_shown(', '.join(widest))}",
                    number,
                )
            )
        delimiter, cells, keys = found
        where: dict[str, int] = {}
        for i, (cell, key) in enumerate(zip(cells, keys, strict=True)):
            if not cell:
                continue  # spreadsheets leave unnamed columns at the end
            same = "email" if key in ADDRESS_COLUMNS else key or cell
            if same in where:
                j = where[same]
                raise NewsletterError(
                    Problem(
                        path,
                        f"columns {j + 1} and {i + 1} of the header name the same column "
                        f"('{_shown(cells[j])}' and '{_shown(cell)}'); keep one",
                        number,
                    )
                )
            where[same] = i

        def first_of(names: tuple[str, ...]) -> int | None:
            return next((where[n] for n in names if n in where), None)

        return cls(
            delimiter,
            cells,
            keys,
            where["email"],
            first_of(NAME_COLUMNS),
            first_of(FIRST_NAME_COLUMNS),
            first_of(LAST_NAME_COLUMNS),
        )

    def rows(self, path: Path, lines: Iterator[str], header_line: int) -> Iterator[_Row]:
        # Each column under its own name, and under its key when that differs
        # (`First Name` -> `first_name`), so that templates can write subscriber.first_name.
        names = [(i, c) for i, c in enumerate(self.columns) if c]
        names += [(i, k) for i, k in enumerate(self.keys) if k and k not in self.columns]
        reader = csv.reader(lines, delimiter=self.delimiter)
        end = header_line
        try:
            for cells in reader:
                start, end = end + 1, header_line + reader.line_num
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue  # a blank line, or the empty rows spreadsheets leave at the end
                cells += [""] * (len(self.columns) - len(cells))
                name = self._name(cells)
                fields = {column: cells[i] for i, column in names}
                yield _Row(start, cells[self.address], name, fields, self.columns[self.address])
        except csv.Error as exc:
            raise NewsletterError(Problem(path, f"not a readable CSV file: {exc}", end + 1)) from None

    def _name(self, cells: list[str]) -> str:
        if self.name is not None and cells[self.name]:
            return cells[self.name]
        parts = (cells[i] for i in (self.first_name, self.last_name) if i is not None)
        return " ".join(p for p in parts if p)


def _key(column: str) -> str:
    """`First Name`, `first_name`, `FIRST-NAME` -> `first_name`: how columns are found and told apart."""
    return re.sub(r"[\W_]+", "_", column.casefold()).strip("_")


def _split(value: str) -> tuple[str, str]:
    """(display name, address) of `ann@example.com`, `"ann@example.com"` or `Ann Smith <ann@example.com>`.

    A value that is not one address comes back whole, as the address, to be refused as such.
    """
    if "<" not in value and '"' not in value and "(" not in value:  # the common case, kept cheap
        return "", value
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        return "", value
    return pairs[0]


def address_key(address: str) -> str:
    """What an address is compared by: letter case, invisible characters and the domain's script aside.

    A suppression list pasted from a web page or a document carries zero-width
    spaces, word joiners and soft hyphens that no one sees; an international
    domain may be written in its own script or in its xn-- form. Either way,
    the person who left must match.
    """
    address = "".join(c for c in address if unicodedata.category(c) != "Cf").strip().lower()
    local, at, domain = address.rpartition("@")
    if at and not domain.isascii():
        with contextlib.suppress(UnicodeError):  # not a domain IDNA can write: compared as written
            domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}"


def _address_control(address: str) -> str | None:
    """Why `address` is refused for a character that is not text, if it has one: it would reach RCPT TO."""
    control = NOT_TEXT.search(address)
    if control is None:
        return None
    # Only a quoted CSV field holds a line break: one whose quote is never closed.
    hint = ": a quote left open?" if control.group() in "\r\n" else ""
    return f"the address contains {describe(control.group())}{hint}"


def _shown(value: str, limit: int = 80) -> str:
    """`value` short enough for a one-line message."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _read_bounded(path: Path) -> str:
    """The whole suppression list, reading at most one byte past the limit: /dev/zero and FIFOs have no size."""
    try:
        with open_regular(path, "suppression list") as handle:
            data = handle.read(MAX_SUPPRESSION_BYTES + 1)
    except OSError as exc:
        raise NewsletterError(Problem(path, f"cannot read: {exc.strerror}")) from None
    if len(data) > MAX_SUPPRESSION_BYTES:
        raise NewsletterError(Problem(path, f"too large for a suppression list (over {MAX_SUPPRESSION_BYTES:,} bytes)"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NewsletterError(Problem(path, "not valid UTF-8; save the list as UTF-8", line)) from None
