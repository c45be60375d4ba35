"""What the tests share besides fixtures: the seed project's names, small writers, and the CLI in a process.

Fixtures live in conftest.py; everything here is a plain name a test imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .timed_lines import TimedLines

REPO = Path(__file__).resolve().parent.parent
SEED = "2021-05-spring-solidarity"
# The key that signs unsubscribe links in tests: strong, as a real send requires.
SECRET = "mer9RbeL1mTBLpg7GVsPov14aQ76aOe6WLCH4tfh91E"

MINIMAL = """
title: "A roundup"
date: 2021-05-03
items:
  - status: new
    title: "An action"
    body: "Something is happening."
    actions:
      - "Do a thing."
"""


def reply_on_the_from_domain(project: Path) -> None:
    """The project's reply_to moved to its from's domain, so that `check` has nothing to say of newsletter.yaml
    (the seed's, hhomes@amnesty.ca from roundup@example.org, is warned of)."""
    site = project / "newsletter.yaml"
    text = site.read_text(encoding="utf-8")
    site.write_text(text.replace("reply_to: hhomes@amnesty.ca", "reply_to: replies@example.org"), encoding="utf-8")


def write_issue(folder: Path, text: str, name: str = "test.yaml") -> Path:
    path = folder / "issues" / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def write_list(folder: Path, rows: list[str], name: str = "list.csv") -> Path:
    path = folder / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def cli_command(*args: object) -> list[str]:
    """`python -m newsletter ARGS`, as a list for `subprocess`."""
    return [sys.executable, "-m", "newsletter", *map(str, args)]


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra`, with this checkout first on the path.

    Without it a child process would run whichever copy of the package is installed, not the one under test.
    """
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **extra, "PYTHONPATH": path}


def send_env(project: Path, port: int) -> dict[str, str]:
    """`cli_env()` for a `send` in its own process to the SMTP server on 127.0.0.1:`port`, with the test key."""
    return cli_env(
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SECRET=SECRET,
        XDG_CACHE_HOME=str(project / ".cache"),
    )


def run_cli(
    cwd: Path,
    *args: object,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, run to its end; `env` adds to `cli_env()`.

    There is always a timeout: a regression that hangs fails its test instead of the whole suite.
    """
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


@contextlib.contextmanager
def cli_watching(cwd: Path, *args: object, env: Mapping[str, str] | None = None) -> Iterator[TimedLines]:
    """The CLI in its own process, running on (`--watch`), its output and errors read line by line as they come.

    Leaving the block presses Ctrl-C and expects a clean stop (exit 0, "stopped" last); a process still
    running after that, or after a failed test, is killed.
    """
    process = subprocess.Popen(
        cli_command(*args),
        cwd=cwd,
        env=cli_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = TimedLines(process.stdout)
        yield lines
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert lines.rest().rstrip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


class FakeClock:
    """Time that passes only when the pool waits, at once: a wait ends at its deadline, never later."""

    def __init__(self) -> None:
        self.time = 0.0
        self.waits = 0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.time

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        with self._lock:
            self.waits += 1
            self.time = max(self.time, deadline)
        return stop.is_set()
