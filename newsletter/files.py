"""Opening the user's files: regular files only, so that no read waits or never ends.

A FIFO blocks on open until someone writes to it; /dev/zero, a terminal or
a socket never end. Every input file (issue, site file, lists) is opened
here, without blocking, and refused unless it is a plain file.
"""

from __future__ import annotations

import os
import stat
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
