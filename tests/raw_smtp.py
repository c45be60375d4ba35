"""A bare SMTP server for tests that must see the bytes on the wire.

aiosmtpd undoes dot-stuffing itself (RFC 5321 4.5.2) before a handler sees
the message, so a client that forgot to stuff looks the same to it as one
that did. This server keeps each message's DATA exactly as it arrived. It
speaks just enough SMTP for smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT), on 127.0.0.1, one thread per connection, and every read has a
timeout so that a client gone silent cannot hold the test.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field

MAX_LINE = 1000  # RFC 5321 4.5.3.1.6: a text line is at most 998 characters and CRLF


@dataclass(frozen=True)
class Received:
    mail_from: bytes
    rcpt_to: tuple[bytes, ...]
    data: bytes  # DATA as sent, still dot-stuffed, without the final ".\r\n"


@dataclass
class _Record:
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Session(socketserver.StreamRequestHandler):
    timeout = 10  # seconds a client may stay silent before its connection is closed
    record: _Record

    def handle(self) -> None:
        with self.record.lock:
            self.record.connections += 1
        try:
            self._talk()
        except OSError:  # a timeout or a client that hung up: end this session quietly
            return

    def _say(self, reply: bytes) -> None:
        self.wfile.write(reply)
        self.wfile.flush()

    def _talk(self) -> None:
        self._say(b"220 127.0.0.1 raw test server\r\n")
        mail_from: bytes | None = None
        rcpt_to: list[bytes] = []
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            verb, _, argument = line.rstrip(b"\r\n").partition(b" ")
            verb = verb.upper()
            if verb in (b"EHLO", b"HELO"):
                self._say(b"250 127.0.0.1\r\n")
            elif verb == b"MAIL":
                mail_from, rcpt_to = argument, []
                self._say(b"250 OK\r\n")
            elif verb == b"RCPT" and mail_from is not None:
                rcpt_to.append(argument)
                self._say(b"250 OK\r\n")
            elif verb == b"DATA" and rcpt_to:
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
            elif verb in (b"RCPT", b"DATA"):
                self._say(b"503 bad sequence of commands\r\n")
            else:
                self._say(b"502 command not implemented\r\n")

    def _data(self) -> bytes | None:
        """The lines up to the one holding only a dot, as they came; None if the client went away."""
        lines = []
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class RawSMTP:
    """Use as a context manager: `with RawSMTP() as server: ... server.port ... server.messages`."""

    def __init__(self) -> None:
        self._record = _Record()
        handler = type("Session", (_Session,), {"record": self._record})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> RawSMTP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def messages(self) -> list[Received]:
        with self._record.lock:
            return list(self._record.messages)

    @property
    def connections(self) -> int:
        with self._record.lock:
            return self._record.connections


def unstuffed(data: bytes) -> bytes:
    """DATA as a receiving server reads it (RFC 5321 4.5.2): one leading dot taken off each line that has one."""
    return b"".join(line[1:] if line.startswith(b".") else line for line in data.splitlines(keepends=True))
