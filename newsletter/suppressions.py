"""The suppression store: everyone who left, and why, so that no send mails them again.

One SQLite file, `state/suppressions.sqlite3`, beside the send ledger and
apart from build output. `serve` writes it when someone unsubscribes (one
click or the page), `inbox` when a bounce or a mailed unsubscribe comes
back, `newsletter suppressions` by hand or from a CRM export; `send` reads
it before every send. WAL and a busy timeout let several processes (two
`serve` workers and a `send`) use it at once without losing a row.

Addresses are compared as `subscribers.address_key` compares them (letter
case, invisible characters and the domain's script aside). Recording an
address twice is harmless: the first reason and time stay, so a link
scanner's repeat cannot rewrite why someone left. But for one case: what
the person did on the web (one click, the page's button) gives way to a
later record of another kind (a bounce, the team's manual record, a mailed
unsubscribe, an import), so that the page's undo, which takes back only the
row it wrote, cannot take back what came after it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from .errors import NewsletterError, Problem
from .model import SCORE_RESETS_AFTER_DAYS
from .state import STATE_DIR, make_state_folder
from .subscribers import address_key

STORE_FILE = "suppressions.sqlite3"
EXPORT_COLUMNS = ("email", "when", "why", "issue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    address  TEXT PRIMARY KEY,       -- subscribers.address_key of the address
    email    TEXT NOT NULL,          -- as it was given
    at       REAL NOT NULL,          -- when, seconds since the epoch
    why      TEXT NOT NULL,          -- a Why
    issue    TEXT,                   -- the issue whose link or bounce it came from
    evidence TEXT NOT NULL DEFAULT '{}'  -- what it was decided on (a bounce's status code and text, ...)
);
CREATE INDEX IF NOT EXISTS by_time ON suppressions (at);
-- What `inbox` decided of each message it recognised, with its evidence: a rerun records nothing twice.
CREATE TABLE IF NOT EXISTS inbox_decisions (
    message  TEXT NOT NULL,          -- inbox.message_key: the message's Message-ID and a digest of it
    address  TEXT NOT NULL DEFAULT '',  -- subscribers.address_key of whom it is about; '' for an auto-reply
    email    TEXT NOT NULL DEFAULT '',
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,          -- hard, soft, unknown (for an address never mailed), unsigned (not to a signed
                                     -- return path, with bounce_address set), mailto, auto-reply
    issue    TEXT,
    suppressed INTEGER NOT NULL DEFAULT 0,
    evidence TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (message, address)
);
-- GNU Mailman's bounce score: a hard bounce adds 1, a soft one 0.5, at most once a day (the day's worst
-- counts): one row per address and day, so that the order a mailbox is read in changes nothing.
CREATE TABLE IF NOT EXISTS bounce_days (
    address  TEXT NOT NULL,
    day      TEXT NOT NULL,          -- YYYY-MM-DD
    points   REAL NOT NULL,
    PRIMARY KEY (address, day)
);
"""

BOUNCE_SCORES = {"hard": 1.0, "soft": 0.5}


@dataclass(frozen=True)
class Decision:
    """What `inbox` made of one message, about one address."""

    kind: str  # hard, soft, unknown, unsigned, mailto, auto-reply
    email: str = ""
    issue: str | None = None
    evidence: dict = field(default_factory=dict)


class Why(StrEnum):
    ONE_CLICK = "one-click"  # RFC 8058 POST from a mail client
    PAGE = "page"  # the unsubscribe page's button
    MAILTO = "mailto"  # a mailed unsubscribe
    BOUNCE = "bounce"  # the address does not take mail
    MANUAL = "manual"  # `newsletter suppressions add`
    IMPORT = "import"  # `newsletter suppressions import`, or the project's suppressions.csv


# How someone unsubscribes themselves, as `newsletter status` counts them per issue.
_UNSUBSCRIBES = (Why.ONE_CLICK, Why.PAGE, Why.MAILTO)
# What the person did on the web: the undo is for these; any other record replaces them (see the module's doc).
_FROM_THE_WEB = (Why.ONE_CLICK, Why.PAGE)
# Upserts that replace a row from the web with a later record of another kind; the INSERT after them adds the rest.
_REPLACE = (
    "UPDATE suppressions SET email = ?, at = ?, why = ?, issue = ?, evidence = ? "
    f"WHERE address = ? AND why IN ({', '.join(repr(str(why)) for why in _FROM_THE_WEB)})"
)
_INSERT = (
    "INSERT INTO suppressions (address, email, at, why, issue, evidence) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (address) DO NOTHING"
)


@dataclass(frozen=True)
class Suppression:
    email: str
    at: float
    why: Why
    issue: str | None
    evidence: dict

    @property
    def when(self) -> str:
        """The time in ISO 8601, UTC: what a CRM import reads."""
        return dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def store_path(root: Path) -> Path:
    return root / STATE_DIR / STORE_FILE


class SuppressionStore:
    """The project's suppression store; open it with `SuppressionStore.open(root)`, close it (or use `with`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            make_state_folder(path.parent)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            # Set once, by whoever makes the file: asking again would need a lock that SQLite's busy
            # timeout does not wait for, and a second server opening the store could fail at once.
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(path, f"cannot open the suppression store: {exc}")) from None

    @classmethod
    def open(cls, root: Path) -> SuppressionStore:
        return cls(store_path(root))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SuppressionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        email: str,
        why: Why,
        *,
        issue: str | None = None,
        evidence: dict | None = None,
        at: float | None = None,
    ) -> bool:
        """Record that `email` left; True if it was not suppressed already.

        The first record stays, unless it is from the web (one click, the page) and this one is not: then this
        one replaces it (see the module's doc), and it is still False, for the address was suppressed already.
        """
        address = address_key(email)
        row = (email.strip(), time.time() if at is None else at, str(why), issue, json.dumps(evidence or {}))
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")  # the replace and the insert as one, between other writers
                if why not in _FROM_THE_WEB:
                    self._db.execute(_REPLACE, (*row, address))
                return bool(self._db.execute(_INSERT, (address, *row)).rowcount)
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot write the suppression store: {exc}")) from None

    def recorded(self, message: str) -> bool:
        """Whether `inbox` has recorded a decision on the message with this key (`inbox.message_key`)."""
        return bool(self._read("SELECT 1 FROM inbox_decisions WHERE message = ? LIMIT 1", (message,)))

    def record_decisions(
        self,
        message: str,
        decisions: Iterable[Decision],
        *,
        day: str = "",
        threshold: float = 0.0,
        resets_after: int = SCORE_RESETS_AFTER_DAYS,
    ) -> list[bool]:
        """Record what `inbox` decided of one message, about each address it names, and act on it, all in one
        transaction (a run cut short records all of a message or none of it, and so reads it again); for each
        decision, True if it suppressed the address. Nothing happens for a (message, address) recorded before.

        `hard` suppresses at once, `mailto` too; `soft` adds to the address's score (once per `day`; see `score`)
        and suppresses once it reaches `threshold`; `unknown`, `unsigned` and `auto-reply` only record.
        """
        now = time.time()
        day = day or dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                return [self._record(message, decision, now, day, threshold, resets_after) for decision in decisions]
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot write the suppression store: {exc}")) from None

    def _record(
        self, message: str, decision: Decision, now: float, day: str, threshold: float, resets_after: int
    ) -> bool:
        kind, email = decision.kind, decision.email.strip()
        address = address_key(email) if email else ""
        facts = json.dumps(decision.evidence)
        if self._db.execute(
            "SELECT 1 FROM inbox_decisions WHERE message = ? AND address = ?", (message, address)
        ).fetchone():
            return False
        suppress = kind in ("hard", "mailto")
        if kind in BOUNCE_SCORES:
            self._db.execute(
                "INSERT INTO bounce_days (address, day, points) VALUES (?, ?, ?) "
                "ON CONFLICT (address, day) DO UPDATE SET points = MAX(points, excluded.points)",
                (address, day, BOUNCE_SCORES[kind]),
            )
            suppress = suppress or self._score(address, resets_after) >= threshold
        if suppress:
            why = Why.MAILTO if kind == "mailto" else Why.BOUNCE
            row = (email, now, str(why), decision.issue, facts)
            self._db.execute(_REPLACE, (*row, address))
            self._db.execute(_INSERT, (address, *row))
        self._db.execute(
            "INSERT INTO inbox_decisions (message, address, email, at, kind, issue, suppressed, evidence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message, address, email, now, kind, decision.issue, int(suppress), facts),
        )
        return suppress

    def decisions(self, email: str | None = None) -> list[tuple[str, str, str, str | None, bool, dict]]:
        """(message, email, kind, issue, suppressed, evidence) of every decision `inbox` recorded, oldest first;
        only those about `email` when given."""
        found = self._read(
            "SELECT message, email, kind, issue, suppressed, evidence FROM inbox_decisions "
            "WHERE ? IS NULL OR address = ? ORDER BY at, rowid",
            (None, None) if email is None else (address_key(email),) * 2,
        )
        return [(m, e, k, i, bool(s), json.loads(ev)) for m, e, k, i, s, ev in found]

    def issue_feedback(self, issue: str) -> dict[str, int]:
        """What came back for one issue: addresses that bounced hard or soft (one address bounced both ways
        counts once in `bounced`), and unsubscribes by how they were made, as recorded for that issue."""
        found = {"hard": 0, "soft": 0, "bounced": 0} | {str(why): 0 for why in _UNSUBSCRIBES}
        bounces = self._read(
            "SELECT kind, COUNT(DISTINCT address) FROM inbox_decisions WHERE issue = ? AND kind IN ('hard', 'soft') "
            "GROUP BY kind UNION ALL SELECT 'bounced', COUNT(DISTINCT address) FROM inbox_decisions "
            "WHERE issue = ? AND kind IN ('hard', 'soft')",
            (issue, issue),
        )
        # A mailed unsubscribe whose address was already suppressed leaves no row of its own: its decision counts.
        left = self._read(
            "SELECT why, COUNT(*) FROM suppressions WHERE issue = ? AND why IN ('one-click', 'page') GROUP BY why "
            "UNION ALL SELECT 'mailto', COUNT(DISTINCT address) FROM inbox_decisions "
            "WHERE issue = ? AND kind = 'mailto'",
            (issue, issue),
        )
        for kind, n in bounces + left:
            found[kind] = n
        return found

    def score(self, email: str, resets_after: int = SCORE_RESETS_AFTER_DAYS) -> float:
        """The address's bounce score: the points of each day it bounced, added up back from its latest bounce
        until a gap of more than `resets_after` days (whatever the order the bounces were read in)."""
        try:
            return self._score(address_key(email), resets_after)
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot read the suppression store: {exc}")) from None

    def _score(self, address: str, resets_after: int) -> float:
        days = self._db.execute(
            "SELECT day, points FROM bounce_days WHERE address = ? ORDER BY day DESC", (address,)
        ).fetchall()
        total, later = 0.0, None
        for day, points in days:
            when = dt.date.fromisoformat(day)
            if later is not None and (later - when).days > resets_after:
                break
            total, later = total + points, when
        return total

    def remove(self, email: str) -> bool:
        """Take `email` off the store (a resubscribe, or a wrong call undone), with its bounce score, so that the
        next soft bounce starts from 0 rather than suppressing again at once; True if it was there."""
        address = address_key(email)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM bounce_days WHERE address = ?", (address,))
                return bool(self._db.execute("DELETE FROM suppressions WHERE address = ?", (address,)).rowcount)
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot write the suppression store: {exc}")) from None

    def remove_if(self, email: str, why: Why, at: float) -> bool:
        """Take `email` off the store only if its row is still the one recorded for `why` at `at`; True if it was.

        One statement, so that no record made meanwhile (by another process) is taken off in its place.
        """
        return bool(
            self._write(
                "DELETE FROM suppressions WHERE address = ? AND why = ? AND at = ?", (address_key(email), str(why), at)
            )
        )

    def get(self, email: str) -> Suppression | None:
        row = self._read(
            "SELECT email, at, why, issue, evidence FROM suppressions WHERE address = ?", (address_key(email),)
        )
        return _suppression(row[0]) if row else None

    def keys(self) -> set[str]:
        """Every suppressed address, as `address_key` writes it: what a send compares its list with."""
        return {address for (address,) in self._read("SELECT address FROM suppressions", ())}

    def rows(self, since: float | None = None) -> Iterator[Suppression]:
        """Every suppression, oldest first; only those recorded at or after `since` when given."""
        found = self._read(
            "SELECT email, at, why, issue, evidence FROM suppressions WHERE at >= ? ORDER BY at, address",
            (since or 0.0,),
        )
        return (_suppression(row) for row in found)

    def add_many(self, addresses: Iterable[str], why: Why = Why.IMPORT) -> int:
        """Record every address (as `subscribers.read_suppression_addresses` gives a list's) at once, the first
        record of each staying; how many were not suppressed yet."""
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                # Each address as written, compared by its key.
                rows = [(address.strip(), now, str(why), None, "{}", address_key(address)) for address in addresses]
                if why not in _FROM_THE_WEB:
                    self._db.executemany(_REPLACE, rows)
                before = self._db.total_changes
                self._db.executemany(_INSERT, [(row[-1], *row[:-1]) for row in rows])
                return self._db.total_changes - before
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot write the suppression store: {exc}")) from None

    def export_csv(self, out: TextIO, since: float | None = None) -> int:
        """Write the store as CSV (email, when, why, issue), for the organisation's CRM; how many rows."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        n = 0
        for row in self.rows(since):
            writer.writerow((csv_cell(row.email), row.when, str(row.why), csv_cell(row.issue or "")))
            n += 1
        return n

    def _write(self, sql: str, values: tuple) -> int:
        try:
            return self._db.execute(sql, values).rowcount
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot write the suppression store: {exc}")) from None

    def _read(self, sql: str, values: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, values).fetchall()
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(self.path, f"cannot read the suppression store: {exc}")) from None


def parse_when(text: str) -> float | None:
    """`2026-01-01` (midnight) or an ISO 8601 date-time as epoch seconds, UTC unless it names its offset; None
    if it is neither. The one reading of a time for `--since`, serve's `?since=` and the export's `when`."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


# A spreadsheet runs a cell starting with one of these as a formula, and `=cmd|'/c calc'!a0@example.org` is a
# valid address. OWASP's advice: a `'` before it, which spreadsheets show as text. A cell that already starts
# with `'`s before one of them gets one more, so that `cell_value` always gives back exactly what was written.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def csv_cell(value: str) -> str:
    """`value` as the export writes it: never read by a spreadsheet as a formula."""
    return "'" + value if _FORMULA.match(value) else value


def cell_value(cell: str) -> str:
    """What `csv_cell` was given."""
    return cell[1:] if cell.startswith("'") and _FORMULA.match(cell, 1) else cell


def _suppression(row: tuple) -> Suppression:
    email, at, why, issue, evidence = row
    return Suppression(email, at, Why(why), issue, json.loads(evidence))
