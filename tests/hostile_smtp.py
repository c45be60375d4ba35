"""A server that says what a test tells it to, for relays that break the rules: each command line (and each
message's end, as b"END") goes to `answer`, whose bytes go back as they are, split as the test likes."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .raw_smtp import LocalServer

# (verb, the connection's state) -> bytes to send back; None hangs up
Answer = Callable[[bytes, "Conversation"], bytes | None]


@dataclass
class Conversation:
    number: int  # of the connection, from 1
    rcpt: bytes = b""
    data: list[bytes] = field(default_factory=list)  # contents received on this connection


@dataclass
class _Record:
    contents: list[tuple[bytes, bytes]] = field(default_factory=list)  # (RCPT argument, content)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostileSMTP(LocalServer):
    def __init__(self, answer: Answer, greeting: bytes = b"220 hostile\r\n", timeout: float = 10) -> None:
        record = self._record = _Record()

        class Session(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(timeout)
                with record.lock:
                    record.connections += 1
                    talk = Conversation(record.connections)
                try:
                    self.request.sendall(greeting)
                    if not greeting.startswith(b"220"):
                        return
                    while line := self.rfile.readline(1 << 16):
                        verb = line.split(b" ", 1)[0].strip().upper()
                        if verb == b"RCPT":
                            talk.rcpt = line.split(b":", 1)[1].strip()
                        reply = answer(verb, talk)
                        if reply is None:
                            return
                        if reply:
                            self.request.sendall(reply)
                        if reply.startswith(b"354"):  # content follows (whatever the verb: a server out of step)
                            content = b"".join(iter(lambda: self.rfile.readline(1 << 16), b".\r\n"))
                            with record.lock:
                                record.contents.append((talk.rcpt, content))
                            reply = answer(b"END", talk)
                            if reply is None:
                                return
                            self.request.sendall(reply)
                        if verb == b"QUIT":
                            return
                except OSError:
                    return

        self._listen(Session)

    @property
    def delivered(self) -> list[bytes]:
        with self._record.lock:
            return [rcpt for rcpt, _ in self._record.contents]

    @property
    def connections(self) -> int:
        with self._record.lock:
            return self._record.connections


def usual(verb: bytes, talk: Conversation, *, pipelining: bool = True) -> bytes | None:
    if verb in (b"EHLO", b"HELO"):
        return b"250-hostile\r\n250 PIPELINING\r\n" if pipelining else b"250 hostile\r\n"
    if verb == b"DATA":
        return b"354 go on\r\n"
    if verb == b"END":
        return b"250 queued\r\n"
    if verb == b"QUIT":
        return b"221 bye\r\n"
    return b"250 OK\r\n"
