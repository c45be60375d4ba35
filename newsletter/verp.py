"""A return path per recipient (VERP): `bounces+TOKEN@example.org`.

A bounce goes to the envelope sender, often with the original message cut
or mangled; with a return path of its own per message, the address the
bounce came back to says whose message it was, whatever the DSN holds.

TOKEN is a compact, signed reference, not the address: a local part has at
most 64 characters (RFC 5321), and an address up to 254. It holds the send
ledger's row id of the recipient, 4 bytes of a hash of the issue identity
(so that a row id from another ledger, or a ledger started afresh, is not
taken for this one's) and 8 bytes of HMAC under NEWSLETTER_SECRET over both,
so that nobody can make up a return path that suppresses someone else.
It is written in lower-case base32 without padding: relays that fold the
case of local parts, as many do, change nothing a reader cannot undo.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import NamedTuple, Protocol

# No list id (A-Za-z0-9.-) contains a space, so nothing the unsubscribe tokens sign can be this label's message.
_LABEL = b"newsletter return path 1\0"
_ISSUE_BYTES = 4
_MAC_BYTES = 8
_MAX_ROW_BYTES = 8  # SQLite's rowids are 63-bit
_MIN_TOKEN = len(base64.b32encode(bytes(1 + _ISSUE_BYTES + _MAC_BYTES)).rstrip(b"="))
MAX_TOKEN = len(base64.b32encode(bytes(_MAX_ROW_BYTES + _ISSUE_BYTES + _MAC_BYTES)).rstrip(b"="))
# Room a bounce_address must leave in its local part: "+" and the longest token.
RESERVED = 1 + MAX_TOKEN
_TOKEN = re.compile(rf"[a-z2-7]{{{_MIN_TOKEN},{MAX_TOKEN}}}")
_LONGEST_ADDRESS = 512  # anything longer is nobody's return path: not looked at


class Reference(NamedTuple):
    """What a genuine return path says: the ledger row of the recipient, and a hash (hex) of the issue identity."""

    row_id: int
    issue_tag: str


class _Ledger(Protocol):
    def recipient(self, row_id: int) -> tuple[str, str] | None: ...


def issue_tag(issue: str) -> str:
    """The short hash of an issue identity that a return path carries (hex)."""
    return hashlib.sha256(issue.encode("utf-8", "surrogateescape")).digest()[:_ISSUE_BYTES].hex()


def return_path(bounce_address: str, secret: str, row_id: int, issue: str) -> str:
    """`local+TOKEN@domain` for the recipient in ledger row `row_id` of `issue`, signed with `secret`."""
    if not 0 < row_id < 2 ** (8 * _MAX_ROW_BYTES - 1):
        raise ValueError(f"a ledger row id is a positive 63-bit number, not {row_id}")
    local, at, domain = bounce_address.rpartition("@")
    if not at or not local:
        raise ValueError(f"{bounce_address!r} is not an address")
    body = row_id.to_bytes((row_id.bit_length() + 7) // 8, "big") + bytes.fromhex(issue_tag(issue))
    token = base64.b32encode(body + _mac(secret, body)).rstrip(b"=").decode().lower()
    return f"{local}+{token}@{domain}"


def read_return_path(secret: str, address: object) -> Reference | None:
    """The reference in a genuine return path made with `secret`; None for anything else, never an exception.

    The address may come in angle brackets, and in any case (the token is
    read lower-cased). A forged, truncated or altered token, a token signed
    with another key, and any other address give None.
    """
    if not isinstance(address, str) or len(address) > _LONGEST_ADDRESS:
        return None
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, _ = address.rpartition("@")
    base, plus, token = local.rpartition("+")
    if not (at and plus and base):
        return None
    token = token.lower()
    if not token.isascii() or _TOKEN.fullmatch(token) is None:
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except ValueError:  # binascii.Error: a length no byte string has in base32
        return None
    # One reference, one token: spare bits set, or a row id with a leading zero byte, are not ours.
    if base64.b32encode(raw).rstrip(b"=").decode().lower() != token:
        return None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    row = body[:-_ISSUE_BYTES]
    if not row or row[0] == 0 or len(row) > _MAX_ROW_BYTES:
        return None
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    row_id = int.from_bytes(row, "big")
    if row_id >= 2 ** (8 * _MAX_ROW_BYTES - 1):
        return None
    return Reference(row_id, body[-_ISSUE_BYTES:].hex())


def recipient(ledger: _Ledger, secret: str, address: object) -> tuple[str, str] | None:
    """(email, issue identity) of the message whose return path `address` is, from the send ledger; else None.

    None too when the row is not there or is another issue's (a ledger started afresh reuses row ids).
    """
    reference = read_return_path(secret, address)
    if reference is None:
        return None
    found = ledger.recipient(reference.row_id)
    if found is None or not hmac.compare_digest(issue_tag(found[1]), reference.issue_tag):
        return None
    return found


def _mac(secret: str, body: bytes) -> bytes:
    key = secret.encode("utf-8", "surrogateescape")  # a key from os.environ may not be UTF-8
    return hmac.new(key, _LABEL + body, hashlib.sha256).digest()[:_MAC_BYTES]
