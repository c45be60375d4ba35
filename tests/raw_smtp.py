"""A bare SMTP server for tests that must see the bytes on the wire.

aiosmtpd undoes dot-stuffing itself (RFC 5321 4.5.2) before a handler sees
the message, so a client that forgot to stuff looks the same to it as one
that did. This server keeps each message's DATA exactly as it arrived. It
speaks just enough SMTP for smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT), on 127.0.0.1, one thread per connection, and every read has a
timeout so that a client gone silent cannot hold the test.

It also sees how a client talks: with `pipelining` it offers PIPELINING
(RFC 2920), and it counts `turns`, the times it answered and then had to
wait for the client's next bytes, which is the round trips a client made.
It can refuse a RCPT, hang up at DATA, and (`lax`) take DATA after no
recipient was accepted, when told.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LINE = 1000  # RFC 5321 4.5.3.1.6: a text line is at most 998 characters and CRLF


@dataclass(frozen=True)
class Received:
    mail_from: bytes
    rcpt_to: tuple[bytes, ...]
    data: bytes  # DATA as sent, still dot-stuffed, without the final ".\r\n"


# (recipient, its attempt number) -> what the server does instead of its usual answer, or None
Fault = Callable[[str, int], bytes | str | None]


@dataclass
class _Record:
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    turns: int = 0
    commands: list[bytes] = field(default_factory=list)  # every command line's verb, in the order they came
    attempts: Counter[str] = field(default_factory=Counter)  # RCPTs per recipient
    empty_data: list[bytes] = field(default_factory=list)  # DATA after no RCPT was accepted (`lax`), as sent
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Session(socketserver.BaseRequestHandler):
    timeout = 10  # seconds a client may stay silent before its connection is closed
    record: _Record
    pipelining: bool
    lax: bool  # answers DATA with 354 even when no RCPT was accepted
    at_rcpt: Fault | None  # a reply instead of 250 (b"550 ...")
    at_data: Fault | None  # "hang up" instead of 354, or "354 and hang up"

    def handle(self) -> None:
        with self.record.lock:
            self.record.connections += 1
        self.request.settimeout(self.timeout)
        self._buffer = bytearray()
        self._answered = False  # since the last read: the next wait for the client is a turn
        try:
            self._talk()
        except OSError:  # a timeout or a client that hung up: end this session quietly
            return

    def _say(self, reply: bytes) -> None:
        self.request.sendall(reply)
        self._answered = True

    def _readline(self) -> bytes:
        """A line as the client sent it, CRLF included (at most MAX_LINE + 1 bytes); b"" when it hung up."""
        while True:
            end = self._buffer.find(b"\n", 0, MAX_LINE + 1)
            if end >= 0 or len(self._buffer) > MAX_LINE:
                size = end + 1 if end >= 0 else MAX_LINE + 1
                line = bytes(self._buffer[:size])
                del self._buffer[:size]
                return line
            if self._answered:
                with self.record.lock:
                    self.record.turns += 1
                self._answered = False
            chunk = self.request.recv(1 << 20)
            if not chunk:
                return b""
            self._buffer += chunk

    def _fault(self, fault: Fault | None, rcpt: bytes) -> bytes | str | None:
        if fault is None:
            return None
        address = rcpt.partition(b"<")[2].partition(b">")[0].decode().lower()
        with self.record.lock:
            attempt = self.record.attempts[address]
        return fault(address, attempt)

    def _hang_up(self, after: bytes = b"") -> None:
        """Close the connection; `after` goes out first, in the same segment as the close (TCP_CORK), so
        that the client finds the connection closed as soon as it has read it."""
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.request.sendall(after)
        self.request.shutdown(socket.SHUT_RDWR)

    def _talk(self) -> None:
        self._say(b"220 127.0.0.1 raw test server\r\n")
        mail_from: bytes | None = None
        rcpt_to: list[bytes] = []
        while True:
            line = self._readline()
            if not line:
                return
            verb, _, argument = line.rstrip(b"\r\n").partition(b" ")
            verb = verb.upper()
            with self.record.lock:
                self.record.commands.append(verb)
            if verb in (b"EHLO", b"HELO"):
                self._say(b"250-127.0.0.1\r\n250 PIPELINING\r\n" if self.pipelining else b"250 127.0.0.1\r\n")
            elif verb == b"MAIL":
                mail_from, rcpt_to = argument, []
                self._say(b"250 OK\r\n")
            elif verb == b"RCPT" and mail_from is not None:
                address = argument.partition(b"<")[2].partition(b">")[0].decode().lower()
                with self.record.lock:
                    self.record.attempts[address] += 1
                refusal = self._fault(self.at_rcpt, argument)
                if isinstance(refusal, bytes):
                    self._say(refusal + b"\r\n")
                    continue
                rcpt_to.append(argument)
                self._say(b"250 OK\r\n")
            elif verb == b"DATA" and rcpt_to:
                fault = self._fault(self.at_data, rcpt_to[0])
                if fault in ("hang up", "354 and hang up"):
                    return self._hang_up(b"354 go on\r\n" if fault == "354 and hang up" else b"")
                self._say(b"354 go on\r\n")
                data = self._data()
                if data is None:
                    return
                with self.record.lock:
                    self.record.messages.append(Received(mail_from or b"", tuple(rcpt_to), data))
                mail_from, rcpt_to = None, []
                self._say(b"250 OK queued\r\n")
            elif verb == b"RSET":
                mail_from, rcpt_to = None, []
                self._say(b"250 OK\r\n")
            elif verb == b"NOOP":
                self._say(b"250 OK\r\n")
            elif verb == b"QUIT":
                self._say(b"221 bye\r\n")
                return
            elif verb == b"DATA" and mail_from is not None and self.lax:
                # Some servers take DATA with no recipient accepted, and refuse only the message (RFC 2920 3.1).
                self._say(b"354 go on\r\n")
                data = self._data()
                if data is None:
                    return
                with self.record.lock:
                    self.record.empty_data.append(data)
                self._say(b"554 5.5.1 no valid recipients\r\n")
            elif verb in (b"RCPT", b"DATA"):
                self._say(b"503 bad sequence of commands\r\n")
            else:
                self._say(b"502 command not implemented\r\n")

    def _data(self) -> bytes | None:
        """The lines up to the one holding only a dot, as they came; None if the client went away."""
        lines = []
        while True:
            line = self._readline()
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class LocalServer:
    """A socketserver on 127.0.0.1, a thread a connection, running for a `with` block."""

    def _listen(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class RawSMTP(LocalServer):
    """Use as a context manager: `with RawSMTP() as server: ... server.port ... server.messages`."""

    def __init__(
        self,
        *,
        pipelining: bool = False,
        lax: bool = False,
        at_rcpt: Fault | None = None,
        at_data: Fault | None = None,
    ) -> None:
        self._record = _Record()
        # Functions kept on the class would become methods: staticmethod keeps them plain.
        faults = {
            "at_rcpt": staticmethod(at_rcpt) if at_rcpt else None,
            "at_data": staticmethod(at_data) if at_data else None,
        }
        handler = type("Session", (_Session,), {"record": self._record, "pipelining": pipelining, "lax": lax, **faults})
        self._listen(handler)

    @property
    def messages(self) -> list[Received]:
        with self._record.lock:
            return list(self._record.messages)

    @property
    def connections(self) -> int:
        with self._record.lock:
            return self._record.connections

    @property
    def empty_data(self) -> list[bytes]:
        with self._record.lock:
            return list(self._record.empty_data)

    @property
    def turns(self) -> int:
        with self._record.lock:
            return self._record.turns

    @property
    def commands(self) -> list[bytes]:
        with self._record.lock:
            return list(self._record.commands)


def unstuffed(data: bytes) -> bytes:
    """DATA as a receiving server reads it (RFC 5321 4.5.2): one leading dot taken off each line that has one."""
    return b"".join(line[1:] if line.startswith(b".") else line for line in data.splitlines(keepends=True))
