"""One SMTP connection's messages on the wire: MAIL, RCPT, DATA and the message, pipelined when the server offers it.

`smtp.connect` opens the connection with smtplib (TLS, EHLO, AUTH); from then on the messages go over its
socket through `Courier`, because smtplib sends one command and waits for its answer: four round trips a
message, which across a network (20 to 80 ms to a relay) is what limits a send. A server that advertises
PIPELINING (RFC 2920) takes MAIL, RCPT and DATA in one write, and a message's content and final dot in the
same write as the next message's MAIL, RCPT and DATA: one round trip a message. Every reply is still read
and checked for its own command; a server without PIPELINING gets one command at a time, as before.
No library does this: smtplib and aiosmtplib (5.1) wait for each reply, and python-slimta's client, which
pipelines one message's envelope, runs on gevent and never sends a content with the next message's commands.

The crash promise holds with the content held back: a message's final dot goes out in the write that
follows its `before_final_dot` (where the ledger marks it in flight), and the next message's final dot only
in a later write, after the reply to this one was read. So however the process dies, at most one message
per connection may have reached the server without its answer having been read.
"""

from __future__ import annotations

import contextlib
import re
import select
import smtplib
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .pace import TEMPORARY
from .smtp import Settings, reply_text

# A reply line: smtplib's own limit, so that no server it talks to is refused here. RFC 5321 4.5.3.1.5 says 512.
MAX_LINE = 8192
MAX_LINES = 100  # of one multiline reply: a server that never ends its reply is a lost connection, not a hang
_DOT_LINE = re.compile(rb"\n\.")  # a regex finds these five times faster than bytes.replace (CPython 3.11)


class Refused(Exception):
    """The server did not take the message: its reply, or (no code) a connection lost before the end."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(f"{code} {text}" if code else text)
        self.code = code

    @property
    def reply(self) -> str:
        """What the ledger records and the person is shown: "550 5.1.1 no such user", "connection lost: ..."."""
        return str(self)

    @property
    def permanent(self) -> bool:
        """5xx: trying again would get the same answer."""
        return self.code is not None and self.code not in TEMPORARY and self.code >= 500


class Unanswered(Exception):
    """The whole message went out, but the server's answer never came: it may or may not have it."""


Result = str | Refused | Unanswered  # a str is the server's acceptance, "250 2.0.0 queued as ..."


@dataclass(eq=False)
class Letter:
    """One message for one recipient; `before_final_dot` runs just before the write that ends it."""

    sender: str
    recipient: str
    message: bytes  # CRLF lines, not yet dot-stuffed
    before_final_dot: Callable[[], None]


class Lost(Exception):
    """The connection broke, timed out, or said something that is not SMTP.

    `sent`: how many bytes of the write that failed went out; None when it failed reading, all written.
    """

    def __init__(self, why: str, sent: int | None = None) -> None:
        super().__init__(why)
        self.sent = sent


@dataclass(frozen=True)
class Reply:
    code: int
    text: bytes  # the lines' text without their codes, joined by newlines (as smtplib gives it)


class Wire:
    """Writes and reads on the socket smtplib opened; every read bounded in time (the socket's timeout) and size."""

    def __init__(self, smtp: smtplib.SMTP) -> None:
        if smtp.sock is None:
            raise Lost("not connected")
        self.sock = smtp.sock
        self.buffer = bytearray()
        timeout = self.sock.gettimeout()
        if timeout and not isinstance(self.sock, ssl.SSLSocket):
            # The kernel keeps the time instead: Python would otherwise poll() before every send and recv, a
            # system call (and a release of the GIL the pool's threads contend for) as dear as the send itself.
            # A read or write that times out then fails with EAGAIN. (Not under TLS: Python's ssl would retry.)
            seconds = struct.pack("ll", int(timeout), int(timeout % 1 * 1_000_000))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, seconds)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, seconds)
            self.sock.settimeout(None)

    def write(self, data: bytes) -> None:
        """All of `data`; Lost says how much of it went out before the connection broke."""
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                sent += self.sock.send(view[sent:])
        except OSError as exc:
            raise Lost(_why(exc), sent) from None

    def reply(self) -> Reply:
        code, lines = 0, []
        while True:
            line = self._line()
            head, more = line[:3], line[3:4]
            if not (head.isdigit() and more in (b"-", b" ", b"")) or (lines and int(head) != code):
                raise Lost(f"the server's reply is not SMTP: {line[:80]!r}")
            code = int(head)
            lines.append(line[4:])
            if more != b"-":
                return Reply(code, b"\n".join(lines))
            if len(lines) >= MAX_LINES:
                raise Lost(f"the server's reply goes on past {MAX_LINES} lines")

    def spoke(self) -> bool:
        """Whether the server sent something nobody asked for yet, or hung up: then nothing more should be written."""
        if self.buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        poller = select.poll()  # not select(): it cannot take a descriptor past 1023
        try:
            poller.register(self.sock, select.POLLIN)
        except (OSError, ValueError):  # closed already
            return True
        return bool(poller.poll(0))

    def _line(self) -> bytes:
        """One line without its CRLF (a bare LF is taken too)."""
        while True:
            end = self.buffer.find(b"\n")
            if 0 <= end <= MAX_LINE:
                line = bytes(self.buffer[:end]).rstrip(b"\r")
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                raise Lost(f"a reply line from the server is longer than {MAX_LINE} bytes")
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise Lost(_why(exc)) from None
            if not chunk:
                raise Lost("Connection unexpectedly closed")  # smtplib's words, which ledgers already hold
            self.buffer += chunk


class Courier:
    """Sends letters one after another over one open connection, and says how each went.

    With PIPELINING, the letter whose DATA was accepted is held (`held`) until the next one is given to
    `send` (its content goes out in the same write as that one's commands) or `flush` is called. Whoever
    uses it must `flush` before waiting for anything, and `close` it in the end (a held letter is then
    dropped, never half sent: its row stays as it was).
    """

    def __init__(self, smtp: smtplib.SMTP, settings: Settings, *, pipelining: bool | None = None) -> None:
        self.smtp = smtp
        self.settings = settings
        self.wire = Wire(smtp)
        self.pipelining = smtp.has_extn("pipelining") if pipelining is None else pipelining
        self.held: Letter | None = None
        self.broken = False  # lost, or closing (421): no more letters on this connection

    def send(self, letter: Letter) -> list[tuple[Letter, Result]]:
        """Start `letter`, and end the one held before it; returns each letter settled now with how it went.

        `letter` is among them unless it is now `held`, its content waiting for the next letter or `flush`.
        """
        if self.broken:
            return [(letter, Refused(None, "connection lost"))]
        if not self.pipelining:
            return [(letter, self._one_at_a_time(letter))]
        return self._round(letter)

    def flush(self) -> list[tuple[Letter, Result]]:
        """Send the held letter's content and read its answer: nothing is left waiting on the connection."""
        return self._round(None) if self.held is not None else []

    def close(self) -> None:
        """QUIT; with a letter held in the middle of its DATA, just hang up: the server drops an unfinished message."""
        if self.held is None and not self.broken:
            with contextlib.suppress(Lost):
                self.wire.write(b"QUIT\r\n")
                self.wire.reply()
        self.held = None
        with contextlib.suppress(OSError):
            self.smtp.close()

    # -- without PIPELINING: each command waits for its answer ----------------------------------------

    def _one_at_a_time(self, letter: Letter) -> Result:
        for command, expected in zip(_commands(letter), EXPECTED, strict=True):
            try:
                self.wire.write(command)
                reply = self.wire.reply()
            except Lost as exc:
                return self._lost(exc)
            if reply.code not in expected:
                return self._out_of_step(command, reply) or self._refused(reply, data_accepted=False)
        return self._end(letter, self._content(letter))

    def _end(self, letter: Letter, content: bytes) -> Result:
        if self.wire.buffer:  # more than the 354, before the content: an answer to a message not yet sent
            return self._lost(
                Lost(f"the server answered before the message was sent: {bytes(self.wire.buffer[:80])!r}")
            )
        self._before_final_dot(letter)
        try:
            self.wire.write(content)
            reply = self.wire.reply()
        except Lost as exc:
            return self._unanswered(exc, content)
        return self._final(reply)

    # -- with PIPELINING --------------------------------------------------------------------------------

    def _round(self, letter: Letter | None) -> list[tuple[Letter, Result]]:
        """One write: the held letter's content and final dot, then `letter`'s MAIL, RCPT and DATA; then the replies."""
        held, self.held = self.held, None
        settled: list[tuple[Letter, Result]] = []
        content = b""
        if held is not None:
            if self.wire.spoke():
                # It hung up, or is about to (a 421 for being idle too long), before the content went out: the
                # held letter was not sent, and can go again on another connection.
                self.broken = True
                lost = Refused(None, "connection lost before the message was sent: the server closed it")
                return [(held, lost)] + ([(letter, lost)] if letter is not None else [])
            content = self._content(held)
            self._before_final_dot(held)
        commands = _commands(letter) if letter is not None else []
        try:
            self.wire.write(content + b"".join(commands))
            if held is not None:
                settled.append((held, self._final(self.wire.reply())))
        except Lost as exc:
            if held is not None:
                settled.append((held, self._unanswered(exc, content)))
            if letter is not None:
                settled.append((letter, Refused(None, f"connection lost: {exc}")))
            return settled
        if letter is None:
            return settled
        if self.broken:  # the held letter's answer was 421: the server is closing, the group is not answered
            return [*settled, (letter, Refused(None, "connection lost: the server is closing it"))]
        result = self._group(letter)
        if result is not None:
            settled.append((letter, result))
        return settled

    def _group(self, letter: Letter) -> Result | None:
        """The replies to MAIL, RCPT and DATA; None if all were accepted (the letter is then held)."""
        refusal: Reply | None = None
        for command, expected in zip(_commands(letter), EXPECTED, strict=True):
            try:
                reply = self.wire.reply()
            except Lost as exc:
                return self._lost(exc)
            if reply.code == 421:  # closing: no more replies will come
                return self._refused(reply, data_accepted=False)
            if reply.code not in expected and (lost := self._out_of_step(command, reply)):
                return lost
            if reply.code not in expected and refusal is None:
                refusal = reply
        if refusal is None:
            self.held = letter
            return None
        # RFC 2920 3.1: a DATA accepted after a refused MAIL or RCPT is ended with a lone dot (no recipient, so
        # nothing is delivered); a DATA refused needs only RSET.
        return self._refused(refusal, data_accepted=reply.code == 354)

    def _before_final_dot(self, letter: Letter) -> None:
        """`letter.before_final_dot`; should it fail (the ledger cannot be written), the connection is in the middle
        of a DATA that must not end: it is only hung up, never sent a QUIT the server would take for content."""
        try:
            letter.before_final_dot()
        except BaseException:
            self.broken = True
            raise

    # -- replies ------------------------------------------------------------------------------------------

    def _final(self, reply: Reply) -> Result:
        """The answer to a message's final dot. Only 4xx and 5xx say the server does not have it: any other 2xx
        than 250 is taken as the yes it means, and a reply that is neither (a 354, say) leaves it unknown, never
        a refusal to send again after, which could mail the person twice."""
        text = reply_text(reply.text, self.settings)
        if 200 <= reply.code <= 299:
            return f"{reply.code} {text}"
        if not 400 <= reply.code <= 599:
            self.broken = True  # out of step: what it answers next would be taken for other commands' replies
            return Unanswered(f"the server's answer to the message is neither a yes nor a no: {reply.code} {text}")
        if reply.code == 421:
            self.broken = True
        return Refused(reply.code, text)

    def _refused(self, reply: Reply, *, data_accepted: bool) -> Refused:
        """The refusal of a command before the message, with the transaction reset for the next one."""
        refused = Refused(reply.code, reply_text(reply.text, self.settings))
        if reply.code == 421:
            self.broken = True
            return refused
        try:
            if data_accepted:
                self.wire.write(b".\r\n")
                self.wire.reply()
            self.wire.write(b"RSET\r\n")
            if self.wire.reply().code != 250:
                self.broken = True
        except Lost:
            self.broken = True
        return refused

    def _out_of_step(self, command: bytes, reply: Reply) -> Refused | None:
        """A reply to a command that is neither what it asks for nor a refusal (250 to DATA, say): the replies no
        longer match the commands (a reply too many, or one missing), so the connection is lost, not reset with an
        RSET the server could take for content. The letter was not sent, and goes again on another connection."""
        if 400 <= reply.code <= 599:
            return None
        verb = command.split(b" ", 1)[0].split(b":", 1)[0].strip().decode()
        text = reply_text(reply.text, self.settings)
        return self._lost(Lost(f"the server answered {verb} with {reply.code} {text}, out of step"))

    def _lost(self, exc: Lost) -> Refused:
        self.broken = True
        return Refused(None, f"connection lost: {exc}")

    def _unanswered(self, exc: Lost, content: bytes) -> Result:
        """A write or read that failed once the letter's `content` was handed to the socket."""
        self.broken = True
        if exc.sent is not None and exc.sent < len(content):  # its final dot never went out: the server cannot have it
            return Refused(None, f"connection lost before the message was sent ({exc})")
        return Unanswered(f"connection lost after the message was sent ({exc})")

    def _content(self, letter: Letter) -> bytes:
        message = dot_stuffed(letter.message)
        return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")


def _commands(letter: Letter) -> list[bytes]:
    """MAIL, RCPT and DATA, their answers expected in `EXPECTED`."""
    return [b"MAIL FROM:" + _path(letter.sender), b"RCPT TO:" + _path(letter.recipient), b"DATA\r\n"]


EXPECTED = ((250,), (250, 251), (354,))


def _path(address: str) -> bytes:
    """The address as an SMTP path, `<address>` and the line's end. The list reader and the site file admit only plain
    ASCII addresses (smtplib's quoteaddr, an email parser, costs more than the rest of the command); checked again,
    so that an address can never carry a second command."""
    if not address.isascii() or any(c in address for c in "<>\r\n\0 "):
        raise ValueError(f"not an address to put in an SMTP command: {address!r}")
    return f"<{address}>\r\n".encode("ascii")


def dot_stuffed(message: bytes) -> bytes:
    """RFC 5321 transparency: a line starting with "." gets another (the message has CRLF lines)."""
    stuffed = _DOT_LINE.sub(b"\n..", message)
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _why(exc: OSError) -> str:
    if isinstance(exc, BlockingIOError):  # SO_RCVTIMEO, SO_SNDTIMEO
        return "timed out"
    return str(exc) or type(exc).__name__
