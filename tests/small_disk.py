"""A disk that fills up, for tests of what a full disk does to the command line."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .support import run_cli


@dataclass(frozen=True)
class SmallDisk:
    folder: Path
    size: int
    file_limit: int | None  # set when no filesystem could be mounted: the CLI then runs under RLIMIT_FSIZE
    says: str  # the operating system's words for the failure


@contextlib.contextmanager
def small_disk(where: Path, size: int, file_limit: int = 64 * 1024) -> Iterator[SmallDisk]:
    """A real filesystem of `size` bytes at `where` (a tmpfs: needs root, as here and in CI).

    Elsewhere the CLI runs with a cap of `file_limit` bytes on each file it writes, which fails writes the same way.
    """
    where.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]).returncode == 0
    except OSError:
        mounted = False
    try:
        if mounted:
            yield SmallDisk(where, size, None, "No space left on device")
        else:
            yield SmallDisk(where, size, file_limit, "File too large")
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=True)


def cli(disk: SmallDisk, cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    def limit_file_size() -> None:
        if disk.file_limit is not None:
            import resource
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (disk.file_limit, disk.file_limit))

    return run_cli(cwd, *args, timeout=120, preexec_fn=limit_file_size)
