"""Reading the bounce mailbox over IMAP: `newsletter inbox` without --maildir or --mbox.

The server comes from the `inbox:` section of newsletter.yaml (host, port,
username, folder), with NEWSLETTER_IMAP_HOST, _PORT and _USERNAME overriding
it, as for SMTP; the password only ever from NEWSLETTER_IMAP_PASSWORD. Only
IMAPS (implicit TLS) with a verified certificate: the mailbox holds
subscribers' addresses and the login is a password, so nothing is read in the
clear, not even from this machine. A private CA is added with --ca-file or
NEWSLETTER_IMAP_CA_FILE.

Nothing is marked read: messages are fetched with BODY.PEEK, and only their
first READ_LIMIT bytes (a partial fetch), in batches planned from their
RFC822.SIZE so that a mailbox of 20 MB messages is never held whole. A
recognised message is MOVEd (RFC 6851) to the processed folder, which is made
when missing; where MOVE is not offered, COPY, \\Deleted and UID EXPUNGE
(RFC 4315) of that one message. Its flags go with it: unread stays unread.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from .connection import ConnectFailed, ca_file_from, env_port, redact, tls_context
from .errors import NewsletterError, Problem
from .inbox import READ_LIMIT, Summary
from .model import Inbox

ENV = "NEWSLETTER_IMAP_"
TIMEOUT = 60.0
# One FETCH brings at most this many bytes (READ_LIMIT of each message at most), and names at most FETCH_COUNT
# UIDs: what is held in memory at once, and a command line every server accepts.
FETCH_BYTES = 8 * 1024 * 1024
FETCH_COUNT = 200

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    username: str
    password: str
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    ca_file: Path | None = None
    timeout: float = TIMEOUT

    def __repr__(self) -> str:  # never show the password, even in a debugger or log
        return (
            f"Settings(host={self.host!r}, port={self.port}, username={self.username!r}, password=***, "
            f"folder={self.folder!r}, processed_folder={self.processed_folder!r})"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (IMAPS)"

    def shown(self, text: str) -> str:
        return redact(text, self.username, self.password)


def settings_from(
    inbox: Inbox, site_file: Path, ca_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The site file's `inbox:` section with NEWSLETTER_IMAP_* environment overrides, or why it cannot be used."""
    env = os.environ if environ is None else environ
    host = env.get(ENV + "HOST") or inbox.host
    if not host:
        raise NewsletterError(
            Problem(
                site_file,
                "no mailbox to read: give --maildir PATH or --mbox PATH, or name the IMAP server "
                "(inbox: host: imap.example.org, username: bounces@example.org) and set NEWSLETTER_IMAP_PASSWORD",
                field="inbox.host",
            )
        )
    port = env_port(env, ENV + "PORT", inbox.port)
    username = env.get(ENV + "USERNAME") or inbox.username
    if not username:
        raise NewsletterError(
            Problem(site_file, f"the login for {host} is missing (or set {ENV}USERNAME)", field="inbox.username")
        )
    password = env.get(ENV + "PASSWORD")
    if not password:
        raise NewsletterError(f"set {ENV}PASSWORD: the password for {username} on {host}")
    processed = inbox.processed_folder.lstrip(".")
    if processed.lower() == inbox.folder.lower():
        raise NewsletterError(
            Problem(
                site_file,
                f"is inbox.folder ({inbox.folder}) itself: recognised messages must move out of the folder read",
                field="inbox.processed_folder",
            )
        )
    return Settings(
        host=host,
        port=port,
        username=username,
        password=password,
        folder=inbox.folder,
        processed_folder=processed,
        ca_file=ca_file_from(env, ENV + "CA_FILE", ca_file),
    )


def connect(settings: Settings) -> IMAPClient:
    """An open, logged-in connection, or ConnectFailed saying why not in one line, without the password."""
    address = settings.address
    try:
        client = IMAPClient(
            settings.host, settings.port, ssl=True, ssl_context=tls_context(settings.ca_file), timeout=settings.timeout
        )
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailed(
            f"{address}: the server's certificate is not trusted ({exc.verify_message}); "
            f"a private CA's certificate can be given with --ca-file PEM or {ENV}CA_FILE",
            retry=False,
        ) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):  # hung up before TLS was set up: going down, or overloaded
        raise ConnectFailed(f"cannot reach {address}: it hung up before TLS was set up", retry=True) from None
    except ssl.SSLError as exc:
        raise ConnectFailed(
            f"{address}: no TLS there ({exc.reason or exc}); inbox reads IMAPS only (implicit TLS, usually port 993)",
            retry=False,
        ) from None
    except UnicodeError as exc:  # a host name IDNA cannot encode
        raise ConnectFailed(f"cannot connect to {address}: {exc}", retry=False) from None
    except TimeoutError:
        raise ConnectFailed(f"cannot reach {address}: no answer in {settings.timeout:g} s", retry=True) from None
    except (OSError, IMAPClientError) as exc:  # down, refusing, hanging up: it may come back
        raise ConnectFailed(f"cannot reach {address}: {_why(exc)}", retry=True) from None
    try:
        with _session(settings, "logging in", reading=False):
            try:
                client.login(settings.username, settings.password)
            except LoginError as exc:
                raise ConnectFailed(
                    f"{address} refused the login for {settings.username}: "
                    f"{settings.shown(_why(exc).removeprefix('login failed: '))}",
                    retry=False,
                ) from None
    except ConnectFailed as exc:
        close(client, lost=exc.retry)
        raise
    except BaseException:
        close(client)
        raise
    return client


def close(client: IMAPClient, *, lost: bool = False) -> None:
    """Log out; or, when the connection is `lost` (a LOGOUT would wait for the timeout again), just close it."""
    if not lost:
        try:
            client.logout()
            return
        except (IMAPClientError, OSError):
            pass
    with contextlib.suppress(Exception):
        client.shutdown()


@contextlib.contextmanager
def _session(settings: Settings, doing: str, *, reading: bool = True) -> Iterator[None]:
    """A lost connection or a refusal while `doing`, in words for people. What was recorded stays recorded and
    every message not yet moved is still where it was, so running again carries on: the message says so once
    `reading` began."""
    again = "; what was read is recorded: run inbox again to carry on" if reading else ""
    try:
        yield
    except TimeoutError:
        raise ConnectFailed(
            f"{settings.address} stopped answering while {doing} (no answer in {settings.timeout:g} s){again}",
            retry=True,
        ) from None
    except (IMAPClientAbortError, OSError) as exc:
        raise ConnectFailed(
            f"lost the connection to {settings.address} while {doing} ({settings.shown(_why(exc))}){again}",
            retry=True,
        ) from None
    except IMAPClientError as exc:
        raise ConnectFailed(f"{settings.address} refused {doing}: {settings.shown(_why(exc))}", retry=False) from None


def _why(exc: BaseException) -> str:
    """What went wrong, as text: imaplib words a server's refusal as the repr of its bytes."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    quoted = re.fullmatch(r"(.*?)b(['\"])(.*)\2", text, flags=re.DOTALL)
    return quoted[1] + quoted[3] if quoted else text


class ImapMailbox:
    """One IMAP folder as an `inbox.Source`: read with BODY.PEEK, recognised messages moved to the processed
    folder."""

    def __init__(self, client: IMAPClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.move_to = settings.processed_folder
        self._offered: set[bytes] = set()
        self._told_no_expunge = False

    def _call(self, doing: str, command: Callable[..., T], *args: object) -> T:
        with _session(self.settings, doing):
            return command(*args)

    def open(self, site_file: Path) -> None:
        """Select the folder to read, and make the processed folder when it is missing."""
        folder = self.settings.folder
        if not self._call(f"looking for {folder}", self.client.folder_exists, folder):
            raise NewsletterError(
                Problem(
                    site_file,
                    f"{self.settings.address} has no folder {folder!r} for {self.settings.username}",
                    field="inbox.folder",
                )
            )
        self._offered = set(self._call("asking what it offers", self.client.capabilities))
        self.move_to = self._processed_name()
        # A folder that only holds folders (\Noselect: Processed.2024 made without Processed) is listed, yet
        # takes no message: every run would record its first message and stop there, unable to move it.
        if not self._holds_messages(self.move_to):
            self._call(f"making the folder {self.move_to}", self.client.create_folder, self.move_to)
            # Mail programs show subscribed folders only: subscribed, the moved messages can be seen and undone.
            self._call(f"subscribing to {self.move_to}", self.client.subscribe_folder, self.move_to)
        self._call(f"opening {folder}", self.client.select_folder, folder)

    def _holds_messages(self, name: str) -> bool:
        """Whether the folder `name` is there and can hold messages (LIST flags it neither \\Noselect nor
        \\NonExistent)."""
        listed = self._call(f"looking for {name}", self.client.list_folders, "", name)
        flags = [{flag.lower() for flag in found} for found, _, listed_name in listed if listed_name == name]
        return bool(flags) and not flags[0] & {b"\\noselect", b"\\nonexistent"}

    def _processed_name(self) -> str:
        """The processed folder where the server keeps personal folders: under INBOX. on servers that say so."""
        name = self.settings.processed_folder
        if b"NAMESPACE" not in self._offered:
            return name
        personal = self._call("asking for the folder names", self.client.namespace).personal
        prefix = personal[0][0] if personal else ""
        prefix = prefix.decode() if isinstance(prefix, bytes) else str(prefix or "")
        return name if not prefix or name.startswith(prefix) else prefix + name

    def messages(self, summary: Summary) -> Iterator[tuple[str, bytes]]:
        uids = self._call(f"searching {self.settings.folder}", self.client.search, ["NOT", "DELETED"])
        for chunk in _chunks(uids, FETCH_COUNT):
            sizes = self._call("reading message sizes", self.client.fetch, chunk, ["RFC822.SIZE"])
            for batch in _by_size(chunk, {uid: found.get(b"RFC822.SIZE", 0) for uid, found in sizes.items()}):
                found = self._call("reading messages", self.client.fetch, batch, [f"BODY.PEEK[]<0.{READ_LIMIT}>"])
                for uid in batch:
                    data = _body(found.get(uid, {}))
                    if data is None:
                        summary.notes.append(f"message {uid} went away while reading; left to the next run")
                        continue
                    yield str(uid), data

    def move(self, key: str, summary: Summary) -> bool:
        uid = [int(key)]
        doing = f"moving message {key} to {self.move_to}"
        moving = b"MOVE" in self._offered
        if not self._still_there(doing, self.client.move if moving else self.client.copy, uid, self.move_to):
            summary.gone_before_move(key)
            return False
        if moving:
            return True
        self._call(doing, self.client.add_flags, uid, [b"\\Deleted"], True)
        if b"UIDPLUS" in self._offered:
            self._call(doing, self.client.uid_expunge, uid)
        elif not self._told_no_expunge:
            # A plain EXPUNGE would also remove what others marked deleted: not ours to decide.
            self._told_no_expunge = True
            summary.notes.append(
                f"the server offers neither MOVE nor UIDPLUS: messages copied to {self.move_to} are marked "
                f"deleted in {self.settings.folder}, not expunged"
            )
        return True

    def _still_there(self, doing: str, command: Callable[..., object], *args: object) -> bool:
        """Run `command` on a message; False when the server says it was expunged meanwhile (RFC 5530's
        EXPUNGEISSUED): another reader of the folder, a second `inbox` or a person, moved it first."""
        with _session(self.settings, doing):
            try:
                command(*args)
            except IMAPClientError as exc:
                if isinstance(exc, IMAPClientAbortError) or "[EXPUNGEISSUED]" not in str(exc):
                    raise
                return False
        return True


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _by_size(uids: list[int], sizes: Mapping[int, int]) -> Iterator[list[int]]:
    """`uids` in batches of at most FETCH_BYTES to read (each message's first READ_LIMIT bytes), one at least."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = min(int(sizes.get(uid, 0)), READ_LIMIT)
        if batch and total + size > FETCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _body(found: Mapping[bytes, object]) -> bytes | None:
    """The fetched text: the server answers BODY[]<0> for a partial BODY.PEEK[]."""
    for name, value in found.items():
        if name.startswith(b"BODY[") and isinstance(value, bytes):
            return value
    return None


@contextlib.contextmanager
def open_mailbox(settings: Settings, site_file: Path) -> Iterator[ImapMailbox]:
    """The folder to read, selected, with the processed folder ready; logged out however the block ends."""
    client = connect(settings)
    lost = False
    try:
        mailbox = ImapMailbox(client, settings)
        mailbox.open(site_file)
        yield mailbox
    except ConnectFailed as exc:
        lost = exc.retry
        raise
    finally:
        close(client, lost=lost)
