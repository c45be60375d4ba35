"""The send ledger: one SQLite row per (issue, recipient), so a send can stop
anywhere and resume without mailing anyone twice.

A recipient is marked `sending` (and committed) just before the final "."
of DATA goes out, and `sent` as soon as the server accepts it. A crash
between the two leaves `sending`: the message may or may not have arrived,
so it is reported as uncertain and not sent again unless asked.

Beside the deliveries, one row per issue remembers where it was sent from,
what its content was and which key signed its links, so that a renamed, a
copied or an edited issue is noticed before anyone is mailed twice or gets
a different issue than their neighbours.

The ledger is the project's memory of who was mailed: it lives in
`state/`, apart from build output, and notices when its file is deleted or
replaced under a running send (see `intact` and `restore`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, ParamSpec, TypeVar

from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .state import make_state_folder, try_lock
from .subscribers import Entry, duplicate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id        INTEGER PRIMARY KEY,
    issue     TEXT NOT NULL,            -- the issue's identity: its `id:`, or its file name
    address   TEXT NOT NULL,            -- lower-cased: the subscriber's identity
    email     TEXT NOT NULL,            -- as written in the list
    name      TEXT NOT NULL DEFAULT '',
    fields    TEXT NOT NULL DEFAULT '{}',
    line      INTEGER,                  -- in the subscriber list
    state     TEXT NOT NULL,
    reply     TEXT NOT NULL DEFAULT '', -- the server's last word, or why skipped
    attempts  INTEGER NOT NULL DEFAULT 0,
    created   REAL NOT NULL,
    updated   REAL NOT NULL,
    sent_at   REAL,
    listed    INTEGER NOT NULL DEFAULT 1 -- in the list given to the latest run
);
-- One row per subscriber and issue, except rows kept only as a record.
CREATE UNIQUE INDEX IF NOT EXISTS one_per_subscriber
    ON deliveries (issue, address) WHERE state NOT IN ('duplicate', 'invalid');
CREATE INDEX IF NOT EXISTS by_state ON deliveries (issue, state, id);
CREATE TABLE IF NOT EXISTS issues (
    issue     TEXT PRIMARY KEY,
    path      TEXT NOT NULL,            -- where it was last sent from, relative to the project
    title     TEXT NOT NULL,
    date      TEXT NOT NULL,
    content   TEXT NOT NULL,            -- fingerprint of the rendered parts being sent now
    secret    TEXT,                     -- fingerprint of the key that signs its links
    created   REAL NOT NULL,
    updated   REAL NOT NULL
);
"""

# Added after the first release; ledgers made before get them on open.
_LATER_COLUMNS = {"deliveries": {"content": "TEXT"}}  # the version each recipient got

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Row:
    id: int
    email: str
    name: str
    fields: dict[str, str]
    attempts: int


class Mark(NamedTuple):
    """A recipient's new state (`Ledger.mark_all`); `content` is the version of the issue they were sent."""

    row_id: int
    state: DeliveryState
    reply: str = ""
    attempt: bool = False
    content: str | None = None


@dataclass(frozen=True)
class IssueRecord:
    """What the ledger remembers of one issue's send."""

    issue: str
    path: str
    title: str
    date: str
    content: str
    secret: str | None


def _database_errors(method: Callable[P, T]) -> Callable[P, T]:
    """SQLite's failures (a damaged file, a full disk) as the user's problem, naming the file."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            ledger = args[0]
            assert isinstance(ledger, Ledger)
            raise NewsletterError(Problem(ledger.path, ledger_problem(exc))) from None

    return wrapper


def ledger_problem(exc: sqlite3.Error) -> str:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return (
            f"the send ledger is damaged ({exc}); nothing was sent. Restore it from a backup of state/ "
            "(it is the only record of who was mailed), or move it aside to start a new record"
        )
    if code == sqlite3.SQLITE_FULL:
        return f"cannot write the send ledger ({exc}); free some space, then run the same command again"
    if code == sqlite3.SQLITE_IOERR:
        return f"cannot read or write the send ledger ({exc}): is the disk full, or a file of state/ gone?"
    return f"the send ledger cannot be used: {exc}"


def refuse_an_interrupted_restore(path: Path) -> None:
    """NewsletterError if a send died while writing the ledger at `path` back (see `Ledger.restore`)."""
    for copy in path.parent.glob(f".{path.name}.restoring-*"):
        raise NewsletterError(
            Problem(
                copy,
                "a send died while writing the send ledger back; this file may be the only record of who "
                f"was mailed. If {path.name} is missing or older, move this file there; then delete it",
            )
        )


class Ledger:
    """Thread-safe: the send's worker threads share one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        refuse_an_interrupted_restore(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except (sqlite3.Error, OSError) as exc:
            raise NewsletterError(Problem(path, f"cannot open the send ledger: {exc}")) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL survives a killed process; only a power cut can
            # lose the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_later_columns()
            # Which files this connection writes, to notice them being deleted or replaced: after the
            # write-ahead log is gone, every commit lives only in this process.
            self._files = _file_ids(path)
        except sqlite3.Error as exc:
            self._db.close()
            raise NewsletterError(Problem(path, ledger_problem(exc))) from None
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None

    def _add_later_columns(self) -> None:
        for table, columns in _LATER_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def claim(self) -> None:
        """Hold this project's ledger for one send; a second concurrent send is refused."""
        self._lock_file = try_lock(self.path.with_name(self.path.name + ".lock"))
        if self._lock_file is None:
            raise NewsletterError(
                Problem(self.path, "another send from this project is running; wait for it, or stop it first")
            )

    def close(self) -> None:
        self._db.close()  # closing twice is harmless
        if self._lock_file is not None:
            self._lock_file.close()  # releases the claim
            self._lock_file = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the file itself ---------------------------------------------------

    def intact(self) -> bool:
        """Whether the file at `path` is still the one this connection writes.

        A user cleaning a folder, or copying an old ledger over this one,
        leaves the connection writing to a file nobody will read again: the
        next run would not know who was mailed.
        """
        try:
            return _file_ids(self.path) == self._files
        except OSError:
            return False

    def restore(self) -> Path | None:
        """Write the open database back to `path`; returns where a file found there was moved.

        SQLite copies itself from the open connection, which still holds
        every row, the ones written after the file vanished included. The
        ledger is closed afterwards (its claim released last, once the
        record is back): the send that noticed must stop.
        """
        copy = self.path.with_name(f".{self.path.name}.restoring-{os.getpid()}")
        moved = None
        try:
            make_state_folder(self.path.parent)
            with self._lock:
                target = sqlite3.connect(copy)
                try:
                    self._db.backup(target)
                finally:
                    target.close()
            try:
                ours = _file_ids(self.path)[0] == self._files[0]
            except OSError:
                ours = not self.path.exists()
            if not ours:  # another file was put in its place: keep it, out of the way
                moved = self.path.with_name(f"{self.path.name}.found-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(self.path, moved)
            # Closing removes the connection's -wal and -shm files by name, so it
            # must happen before the copy takes the name.
            self._db.close()
            os.replace(copy, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise NewsletterError(
                Problem(
                    self.path,
                    f"was deleted or replaced during the send, and writing it back failed ({exc}). Do not "
                    f"resume before you have put the record back: a partial copy may be at {copy.name}",
                )
            ) from None
        finally:
            self.close()
        return moved

    # -- issues ------------------------------------------------------------

    @_database_errors
    def issue_record(self, issue: str) -> IssueRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT issue, path, title, date, content, secret FROM issues WHERE issue = ?", (issue,)
            ).fetchone()
        return IssueRecord(*row) if row else None

    @_database_errors
    def issue_sent_from(self, path: str) -> IssueRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT issue, path, title, date, content, secret FROM issues WHERE path = ? "
                "ORDER BY updated DESC LIMIT 1",
                (path,),
            ).fetchone()
        return IssueRecord(*row) if row else None

    @_database_errors
    def record_issue(self, record: IssueRecord) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO issues (issue, path, title, date, content, secret, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (issue) DO UPDATE SET "
                "path = excluded.path, title = excluded.title, date = excluded.date, content = excluded.content, "
                "secret = COALESCE(excluded.secret, issues.secret), updated = excluded.updated",
                (record.issue, record.path, record.title, record.date, record.content, record.secret, now, now),
            )

    @_database_errors
    def versions(self, issue: str) -> list[tuple[str, int, float]]:
        """(content fingerprint, recipients sent or in flight, first sent) for each version that went out."""
        with self._lock:
            return self._db.execute(
                "SELECT content, COUNT(*), MIN(COALESCE(sent_at, updated)) FROM deliveries "
                "WHERE issue = ? AND state IN (?, ?) AND content IS NOT NULL GROUP BY content ORDER BY 3",
                (issue, DeliveryState.SENT, DeliveryState.SENDING),
            ).fetchall()

    # -- deliveries --------------------------------------------------------

    @_database_errors
    def import_list(self, issue: str, entries: Iterable[Entry]) -> None:
        """Record the list's rows (read with `dedupe=False`); rows already in the ledger keep their state.

        Duplicate and invalid rows are a record of this list, so they are
        replaced on each import rather than piling up.
        """
        now = time.time()
        with self._lock, self._transaction():
            self._db.execute(
                "DELETE FROM deliveries WHERE issue = ? AND state IN (?, ?)",
                (issue, DeliveryState.DUPLICATE, DeliveryState.INVALID),
            )
            # Only the addresses of the list given now are sent to: someone
            # taken off the list since the last run is not mailed on resume.
            self._db.execute("UPDATE deliveries SET listed = 0 WHERE issue = ?", (issue,))
            # Addresses of this list seen so far, kept by SQLite rather than in a
            # Python set so that memory stays flat however long the list.
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (address TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM temp.seen")
            for entry in entries:
                if (
                    entry.state in (DeliveryState.PENDING, DeliveryState.SUPPRESSED)
                    and not self._db.execute(
                        "INSERT INTO temp.seen VALUES (?) ON CONFLICT DO NOTHING", (entry.key,)
                    ).rowcount
                ):
                    entry = duplicate(entry)
                values = (
                    issue,
                    entry.key,
                    entry.email,
                    entry.name,
                    json.dumps(entry.fields),
                    entry.line,
                    entry.state,
                    entry.reason,
                    now,
                    now,
                )
                if entry.state in (DeliveryState.DUPLICATE, DeliveryState.INVALID):
                    self._db.execute(_INSERT, values)
                    continue
                self._db.execute(
                    _INSERT
                    + """
                    ON CONFLICT (issue, address) WHERE state NOT IN ('duplicate', 'invalid') DO UPDATE SET
                        email = excluded.email, name = excluded.name, fields = excluded.fields,
                        line = excluded.line, updated = excluded.updated, listed = 1,
                        -- whoever unsubscribed since the last run is never mailed, whatever
                        -- became of their earlier attempts; and once suppressed for an issue,
                        -- always: a resume without the suppression list must not mail them
                        state = CASE
                            WHEN deliveries.state IN ('sent', 'suppressed') THEN deliveries.state
                            WHEN excluded.state = 'suppressed' THEN 'suppressed'
                            ELSE deliveries.state END,
                        reply = CASE
                            WHEN deliveries.state <> 'sent' AND excluded.state = 'suppressed'
                            THEN excluded.reply ELSE deliveries.reply END""",
                    values,
                )

    def pending(self, issue: str, batch: int = 500) -> Iterator[Row]:
        """Rows still to send, in list order, fetched a batch at a time."""
        last = 0
        while True:
            found = self._batch(issue, last, batch)
            if not found:
                return
            for id_, email, name, fields, attempts in found:
                yield Row(id_, email, name, json.loads(fields), attempts)
            last = found[-1][0]

    @_database_errors
    def _batch(self, issue: str, after: int, size: int) -> list[tuple[int, str, str, str, int]]:
        with self._lock:
            return self._db.execute(
                "SELECT id, email, name, fields, attempts FROM deliveries "
                "WHERE issue = ? AND state = ? AND listed = 1 AND id > ? ORDER BY id LIMIT ?",
                (issue, DeliveryState.PENDING, after, size),
            ).fetchall()

    @_database_errors
    def recipient(self, row_id: int) -> tuple[str, str] | None:
        """(email, issue identity) of delivery row `row_id`, or None if there is none (a return path's reference)."""
        if not isinstance(row_id, int) or not 0 < row_id < 2**63:
            return None
        with self._lock:
            found = self._db.execute("SELECT email, issue FROM deliveries WHERE id = ?", (row_id,)).fetchone()
        return None if found is None else (found[0], found[1])

    def mark(
        self, row_id: int, state: DeliveryState, reply: str = "", *, attempt: bool = False, content: str | None = None
    ) -> None:
        """Record a recipient's new state; `content` is the version of the issue they were sent."""
        self.mark_all([Mark(row_id, state, reply, attempt, content)])

    @_database_errors
    def mark_all(self, marks: Sequence[Mark]) -> None:
        """Record several recipients' new states at once: one commit, which costs more than the rows in it."""
        now = time.time()
        values = [(m.state, m.reply, now, int(m.attempt), m.state, now, m.content, m.row_id) for m in marks]
        with self._lock:
            if len(values) == 1:
                self._db.execute(_MARK, values[0])
                return
            with self._transaction():
                self._db.executemany(_MARK, values)

    @_database_errors
    def reset(self, issue: str, from_state: DeliveryState) -> int:
        """Make rows in `from_state` pending again (for --resend-uncertain, --retry-failed)."""
        with self._lock:
            return self._db.execute(
                "UPDATE deliveries SET state = ?, updated = ? WHERE issue = ? AND state = ? AND listed = 1",
                (DeliveryState.PENDING, time.time(), issue, from_state),
            ).rowcount

    @_database_errors
    def counts(self, issue: str, *, listed_only: bool = False) -> dict[DeliveryState, int]:
        """Rows per state; `listed_only` counts only the list given to the latest run."""
        where = "issue = ? AND listed = 1" if listed_only else "issue = ?"
        with self._lock:
            found = dict(
                self._db.execute(f"SELECT state, COUNT(*) FROM deliveries WHERE {where} GROUP BY state", (issue,))
            )
        return {state: found.get(state, 0) for state in DeliveryState}

    @_database_errors
    def rows_in(
        self, issue: str, state: DeliveryState, limit: int = 1000, *, listed_only: bool = False
    ) -> list[tuple[str, str, int, int]]:
        """(email, reply, attempts, list line) of rows in `state`."""
        listed = " AND listed = 1" if listed_only else ""
        with self._lock:
            return self._db.execute(
                "SELECT email, reply, attempts, line FROM deliveries "
                f"WHERE issue = ? AND state = ?{listed} ORDER BY id LIMIT ?",
                (issue, state, limit),
            ).fetchall()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


_MARK = (
    "UPDATE deliveries SET state = ?, reply = ?, updated = ?, attempts = attempts + ?, "
    "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, content = COALESCE(?, content) WHERE id = ?"
)
_INSERT = (
    "INSERT INTO deliveries (issue, address, email, name, fields, line, state, reply, created, updated) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _file_ids(path: Path) -> tuple[tuple[int, int], ...]:
    """The database file and its write-ahead log, as (device, inode)."""
    return tuple((found.st_dev, found.st_ino) for found in map(os.stat, (path, _wal(path))))


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite may have rolled back itself (a full disk)
            self.db.execute("ROLLBACK")


def sent_issues(path: Path, identities: Iterable[str]) -> set[str]:
    """Which of `identities` the ledger at `path` records as sent to at least one recipient of the list.

    Read-only, and without making the file: a project that never sent has no ledger, and a reader (the
    web archive) must not leave one behind. A `--test` copy records nothing, so it never counts.
    """
    if not path.is_file():
        return set()
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise NewsletterError(Problem(path, ledger_problem(exc))) from None
    try:
        found = set()
        for identity in identities:
            row = db.execute(
                "SELECT 1 FROM deliveries WHERE issue = ? AND state = ? LIMIT 1", (identity, DeliveryState.SENT)
            ).fetchone()
            if row:
                found.add(identity)
        return found
    except sqlite3.Error as exc:
        raise NewsletterError(Problem(path, ledger_problem(exc))) from None
    finally:
        db.close()


def mailed(path: Path) -> Iterator[tuple[int, str, str]]:
    """(row id, issue, email) of every message the ledger at `path` records as sent or maybe sent: whom a
    bounce can be for. Read-only, and without making the file (a project that never sent has nobody to bounce)."""
    if not path.is_file():
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise NewsletterError(Problem(path, ledger_problem(exc))) from None
    try:
        yield from db.execute(
            "SELECT id, issue, email FROM deliveries WHERE state IN (?, ?)", (DeliveryState.SENT, DeliveryState.SENDING)
        )
    except sqlite3.Error as exc:
        raise NewsletterError(Problem(path, ledger_problem(exc))) from None
    finally:
        db.close()
