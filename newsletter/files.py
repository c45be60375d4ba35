"""The user's files: opened only when regular, so that no read waits or never ends; written in one step.

A FIFO blocks on open until someone writes to it; /dev/zero, a terminal or
a socket never end. Every input file (issue, site file, lists) is opened
here, without blocking, and refused unless it is a plain file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import NewsletterError, Problem


def open_regular(path: Path, what: str = "file") -> BinaryIO:
    """`path` opened for reading in binary, or NewsletterError saying why it cannot be."""
    try:
        # Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise NewsletterError(Problem(path, f"no such {what}")) from None
    except OSError as exc:
        raise NewsletterError(Problem(path, f"cannot read {what}: {exc.strerror}")) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # /dev/zero, a FIFO, a terminal: reads that never end or never come
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise NewsletterError(Problem(path, f"is a folder, not a {what}"))
        raise NewsletterError(Problem(path, f"is {_kind(mode)}, not a regular file"))
    return open(fd, "rb")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def write_atomically(path: Path, data: bytes) -> Path:
    """Replace `path` in one step, so a crash never leaves half a file.

    A failure to write (a full disk, no permission) is a NewsletterError naming `path`.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            # mkstemp makes the file private (0600); an email to publish should not be.
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise NewsletterError(Problem(path, f"cannot write: {exc.strerror}")) from None
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
