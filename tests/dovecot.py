"""A real IMAP server for tests: Debian's Dovecot on 127.0.0.1, IMAPS only, with a throwaway configuration.

`Dovecot.running(...)` starts `dovecot -F` in the foreground on a free port, waits until it listens (showing
its log if it never does), and always stops it and waits for it. Its certificate is made by `trustme`:
`ca_file` is what a client must be told to trust. Each test takes a fresh account (`add_user`), whose Maildir
Dovecot makes on its first login, so one server can serve a whole session.

Dovecot runs its mail processes as an unprivileged user, never as root (`nobody` when the tests run as root,
as in CI; the current user otherwise). Its unprivileged processes must reach the password file and the mail,
and pytest's own temporary folders are readable by their owner only: everything lives in a folder of its own,
removed when the server stops.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import grp
import itertools
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme
from imapclient import IMAPClient

from .smtp_server import free_port

DOVECOT = "/usr/sbin/dovecot"
START_TIMEOUT = 20.0
TIMEOUT = 10.0  # every IMAP read the tests make


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@dataclass(frozen=True)
class Stored:
    """A message as the server keeps it: its flags and its bytes."""

    flags: frozenset[bytes]
    data: bytes

    @property
    def seen(self) -> bool:
        return b"\\Seen" in self.flags

    @property
    def message_id(self) -> str:
        return str(email.message_from_bytes(self.data, policy=email.policy.compat32)["Message-ID"])


class Dovecot:
    def __init__(self, root: Path, *, capability: str | None = None) -> None:
        self.root = root
        self.capability = capability  # what IMAP capabilities it offers after login, when not its own list
        self.port = 0
        self.ca_file = root / "ca.pem"
        self._users = root / "users"  # a password file per account: Dovecot notices a new file at once
        self._log = root / "dovecot.log"
        self._stderr = root / "dovecot.stderr"
        self._process: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count(1)

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, capability: str | None = None) -> Iterator[Dovecot]:
        if not Path(DOVECOT).is_file():
            raise RuntimeError(f"{DOVECOT} is missing: apt-get install dovecot-imapd (.ci/run does)")
        root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        root.chmod(0o755)
        server = cls(root, capability=capability)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)

    # -- the server ------------------------------------------------------------------------------------------

    def start(self) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        issued = ca.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        issued.private_key_pem.write_to_path(str(self.root / "key.pem"))
        (self.root / "key.pem").chmod(0o600)
        self._users.mkdir()
        mail = self.root / "mail"
        mail.mkdir()
        user = _mail_user()
        os.chown(mail, user.pw_uid, user.pw_gid)
        for attempt in range(3):  # the free port may be taken between choosing it and Dovecot binding it
            self.port = free_port()
            (self.root / "dovecot.conf").write_text(self._config(user), encoding="utf-8")
            with self._stderr.open("wb") as stderr:
                self._process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                )
            if self._wait_listening():
                return
            self._process.wait(timeout=TIMEOUT)
            if attempt == 2 or "Address already in use" not in self.log():
                break
        raise RuntimeError(f"Dovecot did not start on 127.0.0.1:{self.port}:\n{self.log()}")

    def _wait_listening(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Dovecot did not listen on 127.0.0.1:{self.port} in {START_TIMEOUT:g} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop it and wait for it (its master stops every process it started)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)

    def log(self) -> str:
        found = [p.read_text(encoding="utf-8", errors="replace") for p in (self._stderr, self._log) if p.exists()]
        return "\n".join(found)

    def _config(self, user: pwd.struct_passwd) -> str:
        root = self.root
        # As root, Dovecot's own unprivileged users (from the Debian package); otherwise it all runs as whoever runs it.
        users = ""
        if os.getuid() != 0:
            me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
            users = f"default_login_user = {me}\ndefault_internal_user = {me}\ndefault_internal_group = {group}\n"
        capability = f"protocol imap {{\n  imap_capability = {self.capability}\n}}\n" if self.capability else ""
        return f"""\
protocols = imap
listen = 127.0.0.1
instance_name = dovecot-test-{self.port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {self._log}
{users}ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain
auth_failure_delay = 0
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {self._users}/%u
}}
userdb {{
  driver = static
  args = uid={user.pw_uid} gid={user.pw_gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
# No growing delay after a wrong password (a test makes one on purpose), for the tests that follow it.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
{capability}"""

    # -- accounts and their mail -----------------------------------------------------------------------------

    def add_user(self) -> Account:
        """A fresh account with an empty INBOX."""
        account = Account(f"user{next(self._numbers)}", f"pw-{os.urandom(6).hex()}")
        (self._users / account.username).write_text(f"{account.username}:{{PLAIN}}{account.password}\n")
        return account

    @contextlib.contextmanager
    def client(self, account: Account) -> Iterator[IMAPClient]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with IMAPClient("127.0.0.1", self.port, ssl_context=context, timeout=TIMEOUT) as client:
            client.login(account.username, account.password)
            yield client

    def deliver(self, account: Account, *messages: bytes, folder: str = "INBOX", seen: bool = False) -> None:
        """APPEND each message, unread unless `seen`."""
        with self.client(account) as client:
            for data in messages:
                client.append(folder, data, flags=[b"\\Seen"] if seen else [])

    def messages(self, account: Account, folder: str = "INBOX") -> list[Stored]:
        """What `folder` holds, read without changing a flag (EXAMINE, BODY.PEEK); [] when there is no such folder."""
        with self.client(account) as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            found = client.fetch(client.search("ALL"), ["FLAGS", "BODY.PEEK[]"])
        return [Stored(frozenset(f[b"FLAGS"]), f[b"BODY[]"]) for _, f in sorted(found.items())]


def _mail_user() -> pwd.struct_passwd:
    """Whom Dovecot runs mail processes as: it refuses root."""
    return pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
