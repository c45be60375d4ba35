"""Read a child process's output line by line, never waiting past a deadline.

A bare `process.stdout.readline()` waits forever for a line that never
comes (a server that hangs before printing its address), and with it the
whole suite. Here a thread does the blocking reads and the test waits on a
queue with a timeout, then fails saying what it did see.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import IO

_END = None


class TimedLines:
    """The lines of `stream` (a text pipe), as they come; `seen` keeps every one read so far."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        finally:
            self._lines.put(_END)

    def next(self, timeout: float) -> str | None:
        """The next line, or None at the end of the output; AssertionError if none comes within `timeout` s."""
        if self._ended:
            return None
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; so far: {self.seen!r}") from None
        if line is _END:
            self._ended = True
            return None
        self.seen.append(line)
        return line

    def until(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Read until a line matches `pattern` (re.search); AssertionError at the deadline or the end."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"output ended without a line matching {pattern!r}: {self.seen!r}")
            found = re.search(pattern, line)
            if found:
                return found

    def rest(self, timeout: float = 30) -> str:
        """Everything up to the end of the output (the process has exited or is exiting), as one string."""
        deadline = time.monotonic() + timeout
        while self.next(max(0.0, deadline - time.monotonic())) is not None:
            pass
        return "".join(self.seen)
