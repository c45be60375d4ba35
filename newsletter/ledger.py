"""The send ledger: one SQLite row per (issue, recipient), so a send can stop
anywhere and resume without mailing anyone twice.

A recipient is marked `sending` (and committed) just before the final "."
of DATA goes out, and `sent` as soon as the server accepts it. A crash
between the two leaves `sending`: the message may or may not have arrived,
so it is reported as uncertain and not sent again unless asked.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import NewsletterError, Problem
from .subscribers import DUPLICATE, INVALID, PENDING, SUPPRESSED, Entry, duplicate

SENDING, SENT, FAILED = "sending", "sent", "failed"
STATES = (PENDING, SENDING, SENT, FAILED, DUPLICATE, INVALID, SUPPRESSED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id        INTEGER PRIMARY KEY,
    issue     TEXT NOT NULL,
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
"""


@dataclass(frozen=True)
class Row:
    id: int
    email: str
    name: str
    fields: dict[str, str]
    attempts: int


class Ledger:
    """Thread-safe: the send's worker threads share one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL survives a killed process; only a power cut can
            # lose the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise NewsletterError(Problem(path, f"cannot open the send ledger: {exc}")) from None
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None

    def claim(self) -> None:
        """Hold this project's ledger for one send; a second concurrent send is refused."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_file = lock_path.open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise NewsletterError(
                Problem(self.path, "another send from this project is running; wait for it, or stop it first")
            ) from None

    def close(self) -> None:
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the claim
            self._lock_file = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def import_list(self, issue: str, entries: Iterable[Entry]) -> None:
        """Record the list's rows (read with `dedupe=False`); rows already in the ledger keep their state.

        Duplicate and invalid rows are a record of this list, so they are
        replaced on each import rather than piling up.
        """
        now = time.time()
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM deliveries WHERE issue = ? AND state IN (?, ?)", (issue, DUPLICATE, INVALID))
            # Only the addresses of the list given now are sent to: someone
            # taken off the list since the last run is not mailed on resume.
            self._db.execute("UPDATE deliveries SET listed = 0 WHERE issue = ?", (issue,))
            # Addresses of this list seen so far, kept by SQLite rather than in a
            # Python set so that memory stays flat however long the list.
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (address TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM temp.seen")
            for entry in entries:
                if (
                    entry.state in (PENDING, SUPPRESSED)
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
                if entry.state in (DUPLICATE, INVALID):
                    self._db.execute(_INSERT, values)
                    continue
                self._db.execute(
                    _INSERT
                    + """
                    ON CONFLICT (issue, address) WHERE state NOT IN ('duplicate', 'invalid') DO UPDATE SET
                        email = excluded.email, name = excluded.name, fields = excluded.fields,
                        line = excluded.line, updated = excluded.updated, listed = 1,
                        -- whoever unsubscribed since the last run is never mailed, whatever
                        -- became of their earlier attempts; one no longer suppressed is again
                        state = CASE
                            WHEN deliveries.state = 'sent' THEN 'sent'
                            WHEN excluded.state = 'suppressed' THEN 'suppressed'
                            WHEN deliveries.state = 'suppressed' THEN 'pending'
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
            with self._lock:
                found = self._db.execute(
                    "SELECT id, email, name, fields, attempts FROM deliveries "
                    "WHERE issue = ? AND state = ? AND listed = 1 AND id > ? ORDER BY id LIMIT ?",
                    (issue, PENDING, last, batch),
                ).fetchall()
            if not found:
                return
            for id_, email, name, fields, attempts in found:
                yield Row(id_, email, name, json.loads(fields), attempts)
            last = found[-1][0]

    def mark(self, row_id: int, state: str, reply: str = "", *, attempt: bool = False) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = ?, reply = ?, updated = ?, attempts = attempts + ?, "
                "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
                (state, reply, now, int(attempt), state, now, row_id),
            )

    def reset(self, issue: str, from_state: str) -> int:
        """Make rows in `from_state` pending again (for --resend-uncertain, --retry-failed)."""
        with self._lock:
            return self._db.execute(
                "UPDATE deliveries SET state = ?, updated = ? WHERE issue = ? AND state = ? AND listed = 1",
                (PENDING, time.time(), issue, from_state),
            ).rowcount

    def counts(self, issue: str, *, listed_only: bool = False) -> dict[str, int]:
        """Rows per state; `listed_only` counts only the list given to the latest run."""
        where = "issue = ? AND listed = 1" if listed_only else "issue = ?"
        with self._lock:
            found = dict(
                self._db.execute(f"SELECT state, COUNT(*) FROM deliveries WHERE {where} GROUP BY state", (issue,))
            )
        return {state: found.get(state, 0) for state in STATES}

    def rows_in(
        self, issue: str, state: str, limit: int = 1000, *, listed_only: bool = False
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


_INSERT = (
    "INSERT INTO deliveries (issue, address, email, name, fields, line, state, reply, created, updated) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
