"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, with TLS and AUTH when asked."""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

USER, PASSWORD = "advisor", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Inbox:
    """What the server accepted, in order."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recipients(self) -> Counter[str]:
        with self.lock:
            return Counter(rcpt.lower() for _, rcpts in self.envelopes for rcpt in rcpts)

    def by_recipient(self, address: str) -> email.message.EmailMessage:
        with self.lock:
            for (_, rcpts), message in zip(self.envelopes, self.messages, strict=True):
                if address.lower() in (r.lower() for r in rcpts):
                    return message
        raise KeyError(address)


class Recorder:
    """An aiosmtpd handler that keeps every message; `fault` may answer instead."""

    def __init__(self, inbox: Inbox, fault: Callable[[str, int], str | bytes | None] | None = None) -> None:
        self.inbox = inbox
        # (recipient, attempt) -> a reply instead of 250 (bytes go out as they are), "lost" (stored,
        # answer lost), or None. Asked at RCPT with a negative attempt number, where "drop" closes
        # the connection mid-transaction.
        self.fault = fault
        self.attempts: Counter[str] = Counter()
        self.rcpt_attempts: Counter[str] = Counter()
        self.connections = 0
        self.on_data: Callable[[str], None] | None = None  # after a message is stored, before the 250
        self.on_rcpt: Callable[[str], None] | None = None  # before a message's DATA
        # Offer PIPELINING (RFC 2920), as Postfix and the big relays do: aiosmtpd reads pipelined commands in
        # order and answers each, but does not offer it unless told.
        self.pipelining = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not session.ssl:  # STARTTLS repeats EHLO on the same connection
            self.connections += 1
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.on_rcpt is not None:
            self.on_rcpt(address.lower())
        self.rcpt_attempts[address.lower()] += 1
        if self.fault is not None and self.fault(address.lower(), -self.rcpt_attempts[address.lower()]) == "drop":
            server.transport.close()  # the connection dies before the message is sent
            return "421 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0].lower()
        self.attempts[rcpt] += 1
        if self.fault is not None:
            reply = self.fault(rcpt, self.attempts[rcpt])
            if reply == "lost":  # the message arrives, but the answer never reaches the sender
                self._store(envelope)
                server.transport.close()
                return "250 too late"
            if reply:
                return reply
        self._store(envelope)
        if self.on_data is not None:
            self.on_data(rcpt)
        return "250 OK queued"

    def _store(self, envelope) -> None:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.inbox.lock:
            self.inbox.messages.append(message)
            self.inbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            # The bytes as they came (after aiosmtpd's own dot-unstuffing), before any parsing.
            self.inbox.raw.append(envelope.original_content)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself


def echoing_authenticator(echo: Callable[[bytes, bytes], str]) -> Callable:
    """Refuses every login with a 535 that repeats what the client sent, as some servers do.

    `echo(login, password)` gives the text after "535 5.7.8 ".
    """

    def refuse(server, session, envelope, mechanism, auth_data):
        said = echo(auth_data.login, auth_data.password)
        return AuthResult(success=False, handled=False, message=f"535 5.7.8 {said}")

    return refuse


class Sessions:
    """The server's connections: how many are open at once at most, and, with `limit`, a relay that answers
    Postfix's "421 4.7.0 Error: too many connections" to one more and hangs up; with `at_mail`, one that takes
    the connection and says so (in Mailgun's words) to its MAIL command instead; with `listen_once`, one that
    stops listening after its first connection, so that every later one is refused (ECONNREFUSED)."""

    REFUSAL = b"421 4.7.0 mx.example.org Error: too many connections from 127.0.0.1\r\n"
    AT_MAIL = "421 #4.4.5 Too many connections from your host."

    def __init__(self, limit: int | None = None, *, at_mail: bool = False, listen_once: bool = False) -> None:
        self.limit = limit
        self.at_mail = at_mail
        self.listen_once = listen_once
        self.armed = False  # set once the server is started: its own readiness check is not a client
        self.open = 0
        self.most = 0  # open at once, at most
        self.accepted = 0
        self.refused = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            # With listen_once, a connection the listener took before it closed is refused too.
            if (self._full() and not self.at_mail) or (self.listen_once and self.accepted):
                self.refused += 1
                return False
            self.open += 1
            self.accepted += 1
            self.most = max(self.most, self.open)
            return True

    def leave(self) -> None:
        with self._lock:
            self.open -= 1

    def refuses_mail(self) -> bool:
        """With `at_mail`: whether a MAIL command is refused, the sessions open being over the limit."""
        with self._lock:
            if not (self.at_mail and self.limit is not None and self.open > self.limit):
                return False
            self.refused += 1
            return True

    def _full(self) -> bool:
        return self.limit is not None and self.open >= self.limit


class _CountedSMTP(SMTP):
    def __init__(self, handler, sessions: Sessions, controller: Controller, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self._sessions = sessions
        self._controller = controller
        self._counted = False
        self._refused = False

    def connection_made(self, transport) -> None:
        # Not the TLS layer of a STARTTLS, nor the controller's own check that the server is up: a client.
        if self.transport is None and self._sessions.armed:
            if not self._sessions.enter():
                self._refused = True
                transport.write(Sessions.REFUSAL)
                transport.close()
                return
            self._counted = True
            if self._sessions.listen_once:
                self.loop.call_soon(self._controller.server.close)  # the open connection goes on; new ones fail
        super().connection_made(transport)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._sessions.refuses_mail():
            await self.push(Sessions.AT_MAIL)
            self.transport.close()
            return
        await super().smtp_MAIL(arg)

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        if self._counted:
            self._sessions.leave()
        super().connection_lost(error)


class _CountingController(Controller):
    def __init__(self, handler, sessions: Sessions, **kwargs) -> None:
        self.sessions = sessions
        super().__init__(handler, **kwargs)

    def factory(self):
        return _CountedSMTP(self.handler, self.sessions, self, **self.SMTP_kwargs)


def start(
    handler: Recorder,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    auth: bool = False,
    authenticate: Callable = authenticator,
    auth_exclude: tuple[str, ...] = (),
    sessions: Sessions | None = None,
) -> Controller:
    """`auth_exclude` takes AUTH mechanisms off the server's offer (it offers PLAIN and LOGIN); `sessions` counts
    the connections (and limits them, if it says so)."""
    kwargs: dict = {}
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if auth:
        kwargs.update(
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=starttls is not None,
            auth_exclude_mechanism=auth_exclude,
        )
    if sessions is not None:
        kwargs["sessions"] = sessions
    controller = (_CountingController if sessions is not None else Controller)(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=implicit_tls,
        server_hostname="localhost",
        data_size_limit=10_000_000,
        **kwargs,
    )
    controller.start()
    if sessions is not None:
        sessions.armed = True
    return controller


class Scripted:
    """A bare SMTP listener on 127.0.0.1 that answers from a script, for replies aiosmtpd will not
    give (a refusal in the greeting or to EHLO). It counts the connections made to it."""

    def __init__(self, greeting: bytes, answers: dict[bytes, bytes] | None = None) -> None:
        self.greeting = greeting
        self.answers = answers or {}  # command verb -> reply; anything else gets "250 OK"
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that stop() is noticed
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):  # the client hung up: next one
                    self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.sendall(self.greeting)
        with conn.makefile("rb") as client:
            for line in client:
                verb = (line.split() or [b""])[0].upper()
                if verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                conn.sendall(self.answers.get(verb, b"250 OK\r\n"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
