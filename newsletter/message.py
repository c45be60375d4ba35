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
from email.utils import formatdate

from .errors import NewsletterError
from .model import HEADER_LINE_MAX
from .personalise import Recipient, Slotted, slot_values
from .render import Rendered

CRLF = "\r\n"


@dataclass(frozen=True)
class Composer:
    """Composes each subscriber's message from the parts prepared once per issue.

    (Not an "envelope": in SMTP that is MAIL FROM and RCPT TO, apart from the message.)
    """

    rendered: Rendered
    headers: str  # the common header block, CRLF-terminated lines
    boundary: str
    domain: str
    text: EncodedPart
    html: EncodedPart
    test: bool = False

    @classmethod
    def prepare(cls, rendered: Rendered, subject_prefix: str = "", *, test: bool = False) -> Composer:
        site = rendered.site
        subject = subject_prefix + rendered.issue.subject_line
        lines = [
            address_header("From", site.from_.name, site.from_.email),
            header("Subject", subject),
            f"MIME-Version: 1.0{CRLF}",
            address_header("List-Id", site.organisation, site.list_identifier),
        ]
        if site.reply_to:
            lines.insert(1, f"Reply-To: {site.reply_to}{CRLF}")
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
        readable = re.sub(r"[^A-Za-z0-9.-]+", "-", identity).strip("-.") or "issue"
        return f"<{readable}.{message_id_digest(identity, email)}@{self.domain}>"

    def personalise(self, recipient: Recipient, key: str) -> Personalised:
        """`recipient`'s copy of the issue, with their unsubscribe link signed with `key`.

        The one way every command (build, preview, dry run, test, send) makes one subscriber's copy.
        """
        rendered = self.rendered
        return Personalised(self, recipient, slot_values(rendered.site, recipient, key, rendered.identity))

    def _compose(self, recipient: Recipient, values: Mapping[str, str], *, date: str | None = None) -> bytes:
        """The whole message for `recipient` as CRLF bytes, ready for SMTP or an .eml file."""
        lines = [
            address_header("To", recipient.name, recipient.email),
            f"Date: {date or formatdate(localtime=True)}{CRLF}",
            f"Message-ID: {self.message_id(recipient.email)}{CRLF}",
        ]
        unsubscribe = values.get("unsubscribe_url")
        if unsubscribe:
            targets = [f"<{unsubscribe}>"]
            mailto = values.get("unsubscribe_mailto")
            if mailto:
                targets.append(f"<{mailto}>")
            lines.append(list_header("List-Unsubscribe", targets))
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


def message_id_digest(identity: str, email: str) -> str:
    """The part of a sent message's Message-ID that names its issue and recipient: how `inbox` finds
    whom a bounce quoting it was for."""
    return hashlib.sha256(f"{identity}\0{email.lower()}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Personalised:
    """One subscriber's copy of an issue: the values that fill its slots, and from them each form of it."""

    composer: Composer
    recipient: Recipient
    values: Mapping[str, str]

    @property
    def html(self) -> str:
        return self.composer.rendered.html.fill(self.values)

    @property
    def text(self) -> str:
        return self.composer.rendered.text.fill(self.values)

    def message(self, *, date: str | None = None) -> bytes:
        """The whole MIME message, as CRLF bytes, ready for SMTP or an .eml file."""
        return self.composer._compose(self.recipient, self.values, date=date)


# RFC 5322 2.1.1: a header line SHOULD stay within 78 characters and MUST
# within 998; servers refuse longer ones ("500 Line too long").
FOLD_AT = 78
# RFC 2047 2: an encoded-word is at most 75 characters long.
ENCODED_WORD_MAX = 75
_EW_OVERHEAD = len("=?utf-8?q??=")
_EW_MIN = _EW_OVERHEAD + 12  # room for one character of 4 UTF-8 bytes, Q-encoded
# A plain word must fit on a continuation line after its folding space.
_RAW_WORD_MAX = FOLD_AT - 2
# RFC 2047 5(3): the only characters an encoded-word in a phrase may show as they are.
_Q_LITERAL_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
_Q_LITERAL = frozenset(_Q_LITERAL_BYTES)
_Q_ONE_CHARACTER = _Q_LITERAL_BYTES + b" "  # a space is written "_"
# RFC 5322 3.2.3: words a display name may show without quotes, one space apart.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def header(name: str, value: str) -> str:
    """An unstructured header (Subject) as CRLF-terminated lines; a CR or LF in `value` is refused.

    Plain words stay as they are, folded at spaces. Words that readers would
    not show as written (non-ASCII, control characters, anything containing
    `=?`, which readers decode as an encoded-word) and words too long for a
    line become encoded-words, with the spaces between them; an extra space
    (at either end, or doubled) goes into its neighbour's encoded-word, where
    no reader strips or collapses it.
    """
    _refuse_line_breaks(name, value)
    words = value.split(" ")
    plain = [0 < len(word) <= _RAW_WORD_MAX and _plain(word) for word in words]
    if len(name) + 2 + len(words[0]) > FOLD_AT:  # the first word cannot move to the next line
        plain[0] = False
    for i, word in enumerate(words):
        if not word:  # an extra space: encode it with the next word, or with the one before at the end
            plain[i + 1 if i + 1 < len(words) else i - 1] = False
    folder = _Folder(name)
    start = 0
    while start < len(words) and value:
        end = start + 1
        while end < len(words) and plain[end] == plain[start]:
            end += 1
        if plain[start]:
            for word in words[start:end]:
                folder.add(word)
        else:
            folder.add_encoded(" ".join(words[start:end]))
        start = end
    return folder.text()


def address_header(name: str, display_name: str, address: str) -> str:
    """`name: display_name <address>` (From, To, List-Id); a CR or LF in the display name is refused.

    The common case, a short plain name, is one cheap format: this runs once
    per recipient. Otherwise a plain name is quoted and the address folded
    onto a line of its own, or, if the name is not plain or too long for a
    line, it becomes encoded-words. An address cannot be folded: the site's
    are checked to fit, and a recipient's is at most 254 characters.
    """
    if not display_name:
        return f"{name}: {address}{CRLF}"
    if _plain(display_name):
        phrase = _phrase(display_name)
        line = f"{name}: {phrase} <{address}>"
        if len(line) <= FOLD_AT:
            return line + CRLF
        if len(name) + 2 + len(phrase) > FOLD_AT:
            phrase = ""
    else:
        _refuse_line_breaks(name, display_name)
        phrase = ""
    folder = _Folder(name)
    if phrase:
        folder.add(phrase)
    else:
        folder.add_encoded(display_name)
    folder.add(f"<{address}>")
    return folder.text()


def list_header(name: str, items: list[str]) -> str:
    """`name: a, b`, or, when that is too long, each item on a line of its own after the comma.

    List-Unsubscribe's `<https...>, <mailto:...>` needs this: the URL with its
    token cannot be folded, and with the mailto it often passes 78 characters.
    """
    value = ", ".join(items)
    _refuse_line_breaks(name, value)
    if len(name) + 2 + len(value) <= FOLD_AT:
        return f"{name}: {value}{CRLF}"
    _refuse_too_long(name, len(name) + 3 + max(map(len, items)))  # "name: " (or " " after a fold), the item, ","
    return f"{name}: {f',{CRLF} '.join(items)}{CRLF}"


def _refuse_line_breaks(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise NewsletterError(f"the {name} header would contain a line break: {value!r}")


def _refuse_too_long(name: str, longest: int) -> None:
    # `check` refuses site values that could get here; this keeps any other from reaching a server.
    if longest > HEADER_LINE_MAX:
        raise NewsletterError(
            f"the {name} header would have a line of {longest} characters, "
            f"more than mail allows ({HEADER_LINE_MAX}), and it cannot be folded"
        )


def _plain(text: str) -> bool:
    """Printable ASCII that no reader takes for an encoded-word."""
    return text.isascii() and text.isprintable() and "=?" not in text


def _phrase(text: str) -> str:
    """Plain `text` as a display name: atoms, or else a quoted-string, which keeps every space as it is."""
    if _ATOMS.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class _Folder:
    """One header being written: a fold is a CRLF before a space, which unfolding removes (RFC 5322 2.2.3)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.line = f"{name}:"
        self.empty = True

    def add(self, token: str) -> None:
        """`token` after a space, on a new line when it does not fit on this one."""
        if not self.empty and len(self.line) + 1 + len(token) > FOLD_AT:
            self.lines.append(self.line)
            self.line = ""
        self.line += " " + token
        self.empty = False

    def add_encoded(self, text: str) -> None:
        """`text` as encoded-words, the first one sized to what is left of this line."""
        room = FOLD_AT - len(self.line) - 1
        if room < _EW_MIN and not self.empty:
            self.lines.append(self.line)
            self.line = ""
            room = FOLD_AT - 1
        for word in _encoded_words(text, max(min(room, ENCODED_WORD_MAX), _EW_MIN)):
            self.add(word)  # readers drop the space between two encoded-words

    def text(self) -> str:
        lines = [*self.lines, self.line]
        _refuse_too_long(self.name, max(map(len, lines)))
        return CRLF.join(lines) + CRLF


def _encoded_words(text: str, first: int) -> list[str]:
    """`text` as UTF-8 encoded-words, the first at most `first` characters long and the others 75.

    Each word holds whole characters (RFC 2047 6.3 forbids splitting one).
    Q keeps mostly-Latin text readable; B is shorter for other scripts, and
    the shorter of the two is used, as the `email` package does.
    """
    data = text.encode()
    q_size = _q_size(data)
    b_size = -(-len(data) // 3) * 4
    b = b_size < q_size
    if min(b_size, q_size) <= first - _EW_OVERHEAD:  # a short name: one word
        return [_encoded_word(data, b)]
    words: list[str] = []
    limit = first - _EW_OVERHEAD
    chunk = b""
    size = 0
    for character in text:
        piece = character.encode()
        grown = -(-(len(chunk) + len(piece)) // 3) * 4 if b else size + _q_size(piece)
        if grown > limit and chunk:
            words.append(_encoded_word(chunk, b))
            chunk, limit = b"", ENCODED_WORD_MAX - _EW_OVERHEAD
            grown = -(-len(piece) // 3) * 4 if b else grown - size
        chunk += piece
        size = grown
    words.append(_encoded_word(chunk, b))
    return words


def _q_size(data: bytes) -> int:
    """Length of `data` Q-encoded: three characters (=XX) for each byte not shown as one."""
    return len(data) + 2 * len(data.translate(None, _Q_ONE_CHARACTER))


def _encoded_word(data: bytes, b: bool) -> str:
    if b:
        return f"=?utf-8?b?{binascii.b2a_base64(data, newline=False).decode('ascii')}?="
    encoded = "".join(chr(byte) if byte in _Q_LITERAL else "_" if byte == 0x20 else f"={byte:02X}" for byte in data)
    return f"=?utf-8?q?{encoded}?="


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
