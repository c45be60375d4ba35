"""MIME messages, built fast enough to make one per subscriber.

The Python `email` package takes milliseconds to build a 40 KB message:
fine once per issue, too slow once per recipient for a big list. Here the
headers that are the same for everyone, the MIME skeleton and the
quoted-printable bodies are prepared once per issue (`binascii`, C code);
per recipient only the To/Date/Message-ID/List-Unsubscribe headers and the
slot values are made, then joined. Tests parse the result with `email` to
hold it to the standard.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate

from .errors import NewsletterError
from .render import Rendered
from .slots import Slotted
from .unsubscribe import unsubscribe_url

CRLF = "\r\n"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    fields: Mapping[str, str] | None = None  # every column of the subscriber list


@dataclass(frozen=True)
class Envelope:
    """What is the same in every message of one issue."""

    rendered: Rendered
    headers: str  # the common header block, CRLF-terminated lines
    boundary: str
    domain: str
    text: EncodedPart
    html: EncodedPart
    test: bool = False

    @classmethod
    def prepare(cls, rendered: Rendered, subject_prefix: str = "", *, test: bool = False) -> Envelope:
        site = rendered.site
        subject = subject_prefix + rendered.issue.subject_line
        lines = [
            header("From", formataddr((site.from_.name, site.from_.email), charset="utf-8"), structured=True),
            header("Subject", subject),
            f"MIME-Version: 1.0{CRLF}",
            header("List-Id", formataddr((site.organisation, site.list_identifier), charset="utf-8"), structured=True),
        ]
        if site.reply_to:
            lines.insert(1, header("Reply-To", site.reply_to, structured=True))
        boundary = f"=_nl_{secrets.token_hex(12)}"  # '=_' never occurs in quoted-printable text
        return cls(
            rendered,
            "".join(lines),
            boundary,
            site.domain,
            EncodedPart.of("plain", rendered.text),
            EncodedPart.of("html", rendered.html),
            test,
        )

    def message_id(self, email: str) -> str:
        """The same for the same issue and recipient, so a receiving server can drop a repeat.

        A test copy gets a fresh one: were it the same as the real message's,
        the advisor's mailbox would hide the real one (or the next test).
        """
        if self.test:
            return f"<test.{secrets.token_hex(16)}@{self.domain}>"
        identity = self.rendered.identity
        digest = hashlib.sha256(f"{identity}\0{email.lower()}".encode()).hexdigest()[:32]
        readable = re.sub(r"[^A-Za-z0-9.-]+", "-", identity).strip("-.") or "issue"
        return f"<{readable}.{digest}@{self.domain}>"

    def values(self, recipient: Recipient, secret: str) -> dict[str, str]:
        """What fills the slots for `recipient`: their fields, name, address and unsubscribe link."""
        site = self.rendered.site
        return {
            **(recipient.fields or {}),
            "email": recipient.email,
            "name": recipient.name,
            "unsubscribe_url": unsubscribe_url(site.unsubscribe_url, secret, site.list_identifier, recipient.email),
        }

    def compose(self, recipient: Recipient, values: Mapping[str, str], *, date: str | None = None) -> bytes:
        """The whole message for `recipient` as CRLF bytes, ready for SMTP or an .eml file."""
        to = formataddr((recipient.name, recipient.email), charset="utf-8")
        lines = [
            header("To", to, structured=True),
            f"Date: {date or formatdate(localtime=True)}{CRLF}",
            f"Message-ID: {self.message_id(recipient.email)}{CRLF}",
        ]
        unsubscribe = values.get("unsubscribe_url")
        if unsubscribe:
            targets = [f"<{unsubscribe}>"]
            mailto = self.rendered.site.unsubscribe_mailto
            if mailto:
                targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
            lines.append(header("List-Unsubscribe", ", ".join(targets), structured=True))
            lines.append(f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{CRLF}")
        lines.append(f'Content-Type: multipart/alternative; boundary="{self.boundary}"{CRLF}')
        b = f"--{self.boundary}".encode()
        return b"".join(
            (
                (self.headers + "".join(lines)).encode("ascii"),
                b"\r\n" + b + b"\r\n",
                self.text.fill(values),
                b"\r\n" + b + b"\r\n",
                self.html.fill(values),
                b"\r\n" + b + b"--\r\n",
            )
        )


def header(name: str, value: str, *, structured: bool = False) -> str:
    """One header line; a CR or LF in the value is refused, never passed on.

    Unstructured text (Subject) is RFC 2047-encoded and folded when needed;
    `structured` values (addresses, URLs) arrive already encoded by
    `formataddr` and must not be encoded again.
    """
    if "\r" in value or "\n" in value:
        raise NewsletterError(f"the {name} header would contain a line break: {value!r}")
    if structured or (value.isascii() and len(name) + len(value) < 76):
        return f"{name}: {value}{CRLF}"
    charset = "us-ascii" if value.isascii() else "utf-8"
    return f"{name}: {Header(value, charset, header_name=name).encode(linesep=CRLF)}{CRLF}"


@dataclass(frozen=True)
class EncodedPart:
    """One MIME part whose quoted-printable body is encoded once, slots apart.

    Each literal piece is encoded on its own, and pieces are joined with a
    soft line break ("=" at the end of a line), which decoders remove: lines
    stay within 76 characters, the decoded text is exactly the filled-in
    text, and per recipient only the slot values need encoding.
    """

    head: bytes
    literals: tuple[bytes, ...]
    slotted: Slotted

    @classmethod
    def of(cls, subtype: str, slotted: Slotted) -> EncodedPart:
        head = (
            f"Content-Type: text/{subtype}; charset=utf-8{CRLF}Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
        ).encode("ascii")
        return cls(head, tuple(_qp(piece) for piece in slotted.literals), slotted)

    def fill(self, values: Mapping[str, str]) -> bytes:
        out = [self.head, self.literals[0]]
        for value, literal in zip(self.slotted.values(values), self.literals[1:], strict=True):
            out += (_SOFT_BREAK, _qp(value), _SOFT_BREAK, literal)
        return b"".join(out)


_SOFT_BREAK = b"=\r\n"


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")  # no bare CR on the wire
    # binascii ends soft line breaks like the text's first line, or with a
    # bare LF when it has none; SMTP wants CRLF everywhere.
    return binascii.b2a_qp(data, quotetabs=False, istext=True).replace(b"\n", b"\r\n")
