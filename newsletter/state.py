"""The project's memory: `state/`, kept apart from build output.

`outbox/` holds what builds write and may be cleaned at any time; the
record of who was mailed must survive that. `state/` gets its own
`.gitignore` the moment it is made, because what it holds is personal data.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

from .errors import NewsletterError, Problem

STATE_DIR = "state"
LEDGER_FILE = "ledger.sqlite3"
_GITIGNORE = "# Written by newsletter: who was mailed, who left. Personal data: never commit it; back it up.\n*\n"


def state_folder(root: Path) -> Path:
    """`root/state/`, made (with its .gitignore) if it is not there yet."""
    return make_state_folder(root / STATE_DIR)


def make_state_folder(folder: Path) -> Path:
    try:
        folder.mkdir(exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_GITIGNORE, encoding="utf-8")
    except OSError as exc:
        raise NewsletterError(Problem(folder, f"cannot make the state folder: {exc.strerror}")) from None
    return folder


def ledger_path(root: Path) -> Path:
    return root / STATE_DIR / LEDGER_FILE


def move_old_ledger(root: Path) -> Problem | None:
    """Move a ledger left in `outbox/` by earlier versions into `state/`; says what it did, if anything."""
    old = root / "outbox" / LEDGER_FILE
    if not old.is_file():
        return None
    new = ledger_path(root)
    if new.exists():
        return Problem(old, f"an older send ledger, not used: {new.relative_to(root)} is the record now")
    state_folder(root)
    # An older version's send may still be writing it; its claim is this lock.
    claim = try_lock(old.with_name(old.name + ".lock"))
    if claim is None:
        raise NewsletterError(Problem(old, "a send of an earlier version is using this ledger; wait for it to end"))
    with claim:
        copy = new.with_name(f".{new.name}.moving-{os.getpid()}")
        try:
            source = sqlite3.connect(old)
            target = sqlite3.connect(copy)
            try:
                source.backup(target)  # takes the -wal's rows along, unlike a file copy
            finally:
                target.close()
                source.close()
            os.replace(copy, new)
        except (sqlite3.Error, OSError) as exc:
            Path(copy).unlink(missing_ok=True)
            raise NewsletterError(Problem(old, f"cannot move the send ledger to {new}: {exc}")) from None
        for leftover in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
            leftover.unlink(missing_ok=True)
    old.with_name(old.name + ".lock").unlink(missing_ok=True)
    return Problem(
        old,
        f"moved the send ledger to {new.relative_to(root)}, apart from build output: cleaning outbox/ cannot lose it",
    )


def try_lock(path: Path) -> IO[str] | None:
    """An exclusive claim on `path`, held while the returned file is open; None if another process holds it."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
