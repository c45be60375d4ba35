"""A real Postfix for tests: Debian's /usr/sbin/postfix on 127.0.0.1, with a throwaway configuration.

Everything the instance owns is under one folder (its `config_directory`,
`queue_directory`, `data_directory`, log and mailboxes), so it never touches
the system's /etc/postfix instance, and two can run side by side. smtpd
listens on a free port of 127.0.0.1 (never 25) and accepts mail for any
address from 127.0.0.0/8. Every message, whatever its domain, goes to one
pipe(8) transport whose script (`deliver`, written here) files it into the
recipient's Maildir when the test made one (`mailbox()`; `bounces+x@d`
falls back to `bounces@d`, as Postfix's recipient_delimiter would) and
exits 67 (EX_NOUSER) when not: Postfix has accepted the message by then, so
it is Postfix itself that writes the DSN and delivers it to the envelope
sender, the way a relay bounces mail for a mailbox that does not exist.

The folder is a fresh one in the system's temporary folder, not in pytest's:
Postfix's daemons open their files by absolute path as `postfix`, and pipe(8)
runs its command as `nobody`, and neither may walk pytest's 0700 folders.
The `postfix` fixture (conftest.py) copies the log into the test's tmp_path
when it stops the instance, and removes the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .smtp_server import free_port

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
DELIVERY_USER = "nobody"  # pipe(8) refuses root and the mail owner
COMMAND_TIMEOUT = 30  # seconds any postfix command may take
STOP_TIMEOUT = 10  # seconds the master may take to exit once told to


def _deliver_script(maildirs: Path) -> str:
    """pipe(8)'s command: $1 is the recipient; the message on stdin goes into its Maildir, or is bounced."""
    return f"#!/bin/sh\nmaildirs={shlex.quote(str(maildirs))}\n" + textwrap.dedent(
        """\
            rcpt=$(printf '%s' "$1" | tr 'A-Z' 'a-z')
            box=$maildirs/$rcpt
            if [ ! -d "$box/new" ]; then
                local_part=${rcpt%@*}
                box=$maildirs/${local_part%%+*}@${rcpt##*@}
            fi
            # EX_NOUSER: Postfix bounces the message, in its own words, to the envelope sender.
            [ -d "$box/new" ] || exit 67
            name=$(date +%s).$$.postfix-test
            # EX_TEMPFAIL: Postfix tries again later.
            cat > "$box/tmp/$name" || exit 75
            mv "$box/tmp/$name" "$box/new/$name" || exit 75
            """
    )


def _main_cf(root: Path) -> str:
    return textwrap.dedent(
        f"""\
        compatibility_level = 3.6
        config_directory = {root / "etc"}
        queue_directory = {root / "queue"}
        data_directory = {root / "data"}
        mail_owner = postfix
        setgid_group = postdrop
        maillog_file = {root / "postfix.log"}
        maillog_file_prefixes = {root}
        myhostname = mx.postfix.test
        mydomain = postfix.test
        myorigin = $myhostname
        inet_interfaces = 127.0.0.1
        inet_protocols = ipv4
        mynetworks = 127.0.0.0/8
        mydestination =
        relay_domains =
        alias_maps =
        alias_database =
        transport_maps = static:deliver
        deliver_destination_recipient_limit = 1
        smtp_dns_support_level = disabled
        smtpd_peername_lookup = no
        smtpd_error_sleep_time = 0
        queue_run_delay = 1s
        minimal_backoff_time = 1s
        maximal_backoff_time = 2s
        biff = no
        """
    )


def _master_cf(root: Path, port: int) -> str:
    # No chroot (column 5 is n): nothing is copied into the queue directory.
    return textwrap.dedent(
        f"""\
        127.0.0.1:{port} inet n - n - - smtpd
        pickup    unix  n - n 60 1 pickup
        cleanup   unix  n - n - 0 cleanup
        qmgr      unix  n - n 300 1 qmgr
        rewrite   unix  - - n - - trivial-rewrite
        bounce    unix  - - n - 0 bounce
        defer     unix  - - n - 0 bounce
        trace     unix  - - n - 0 bounce
        verify    unix  - - n - 1 verify
        flush     unix  n - n 1000? 0 flush
        proxymap  unix  - - n - - proxymap
        showq     unix  n - n - - showq
        error     unix  - - n - - error
        retry     unix  - - n - - error
        discard   unix  - - n - - discard
        anvil     unix  - - n - 1 anvil
        scache    unix  - - n - 1 scache
        postlog   unix-dgram n - n - 1 postlogd
        deliver   unix  - n n - - pipe
          flags=DR user={DELIVERY_USER} argv={root / "deliver"} ${{recipient}}
        """
    )


@dataclass(frozen=True)
class Postfix:
    """A running instance: where to connect, and what it delivered."""

    root: Path
    host: str
    port: int

    @property
    def config(self) -> Path:
        return self.root / "etc"

    @property
    def master_pid(self) -> int | None:
        return _master_pid(self.root)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`postfix -c CONFIG ARGS` (this instance's, never the system's), run to its end, whatever its status."""
        return _postfix(self.config, *args)

    def queue(self) -> list[dict]:
        """What is still in the queue (`postqueue -j`: one JSON object a message); [] once all is delivered."""
        listed = _run(POSTQUEUE, "-c", str(self.config), "-j")
        return [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """Try every deferred message again now (`postqueue -f`)."""
        _run(POSTQUEUE, "-c", str(self.config), "-f")

    def mailbox(self, address: str) -> Path:
        """A Maildir that mail for `address` (and `address`'s local part + anything) is delivered into."""
        path = self._maildir(address)
        owner = pwd.getpwnam(DELIVERY_USER)
        for sub in ("", "tmp", "new", "cur"):
            (path / sub).mkdir(exist_ok=True)
            os.chown(path / sub, owner.pw_uid, owner.pw_gid)
        return path

    def delivered(self, address: str) -> list[bytes]:
        """Each message delivered to `address`'s mailbox so far, oldest first."""
        path = self._maildir(address)
        files = [p for sub in ("new", "cur") for p in (path / sub).iterdir()]
        return [p.read_bytes() for p in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))]

    def wait_for(self, address: str, count: int, timeout: float = 30) -> list[bytes]:
        """The messages of `address`'s mailbox once there are `count`; an assertion showing the log if not in time."""
        self._wait(
            lambda: len(self.delivered(address)) >= count, timeout, f"{count} message(s) in the mailbox of {address}"
        )
        return self.delivered(address)

    def wait_until_idle(self, timeout: float = 30) -> None:
        """Until the queue is empty: everything delivered or bounced, the bounces too, nothing deferred."""
        self._wait(lambda: not self.queue(), timeout, "an empty queue")

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}; the Postfix log:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else "(no log)"

    def _maildir(self, address: str) -> Path:
        return self.root / "mail" / address.lower()


@contextlib.contextmanager
def running(keep_log: Path | None = None, settings: str = "") -> Iterator[Postfix]:
    """A Postfix of its own, started; stopped and removed however the block ends (its log copied to `keep_log`).

    `settings` are main.cf lines added after the harness's own (a later line wins).
    """
    _require_postfix()
    root = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
    try:
        _configure(root, settings)
        try:
            yield Postfix(root, "127.0.0.1", _start(root))
        finally:
            _stop(root)  # also after a start that failed halfway
    finally:
        if keep_log is not None and (root / "postfix.log").exists():
            shutil.copyfile(root / "postfix.log", keep_log)
        shutil.rmtree(root, ignore_errors=True)


def _require_postfix() -> None:
    """A failed test saying what is missing (a skip would hide a broken promise)."""
    if not os.access(POSTFIX, os.X_OK):
        pytest.fail(
            f"these tests run Debian's Postfix, and {POSTFIX} is not there; install it with: "
            "apt-get update && apt-get install -y postfix (as root, as .ci/run does)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("these tests start a Postfix of their own, which only root can do (CI runs as root)", pytrace=False)


def _configure(root: Path, settings: str = "") -> None:
    root.chmod(0o755)  # postfix and nobody open files in it by absolute path
    (root / "etc").mkdir()
    (root / "queue").mkdir(mode=0o755)
    data = root / "data"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postfix", "postfix")
    (root / "mail").mkdir(mode=0o755)
    deliver = root / "deliver"
    deliver.write_text(_deliver_script(root / "mail"), encoding="utf-8")
    deliver.chmod(0o755)
    _write_config(root / "etc" / "main.cf", _main_cf(root) + textwrap.dedent(settings))


def _write_config(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    # Postfix reads a configuration file changed in the last second again and again, 0.3 s apart, until it is
    # a second old (so as not to read one half-written): dated a minute back, it is read once.
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))


def _start(root: Path, attempts: int = 3) -> int:
    """Start the master on a free port; another port if someone took this one in between."""
    for attempt in range(attempts):
        port = free_port()
        _write_config(root / "etc" / "master.cf", _master_cf(root, port))
        started = _postfix(root / "etc", "start")
        if started.returncode == 0:
            return port
        if attempt == attempts - 1:
            log = root / "postfix.log"
            raise RuntimeError(
                f"postfix did not start:\n{started.stdout}{started.stderr}\n"
                + (log.read_text(encoding="utf-8", errors="replace") if log.exists() else "")
            )
    raise AssertionError("unreachable")


def _stop(root: Path) -> None:
    """Stop the master and wait until it is gone; kill its process group if it will not go.

    `postfix abort` sends the master the same SIGTERM as `postfix stop`, but returns at once, where `stop`
    checks whether the master is gone only once a second: the throwaway queue has nothing to lose.
    """
    pid = _master_pid(root)
    if pid is None:
        return
    _postfix(root / "etc", "abort")
    if not exited(pid, STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # what `postfix stop` does to a master that outstays it
        exited(pid, STOP_TIMEOUT)


def _master_pid(root: Path) -> int | None:
    try:
        return int((root / "queue" / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def exited(pid: int, timeout: float = 0) -> bool:
    """Whether process `pid` has exited (a zombie nobody reaps counts as gone) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _postfix(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(POSTFIX, "-c", str(config), *args, check=False)


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # MAIL_CONFIG from the caller's environment would point the command at another instance.
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=check)
