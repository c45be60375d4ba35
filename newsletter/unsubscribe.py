"""Signed per-subscriber unsubscribe tokens.

The unsubscribe page receives the token and must be able to trust it without
a database lookup and without letting anyone unsubscribe someone else: the
token carries the address and an HMAC over it, keyed by NEWSLETTER_SECRET.

It also carries the identity of the issue whose message held the link, so
that the suppression says which issue someone left from. The payload is the
address, or the address, a NUL and the issue: the HMAC covers the payload as
a whole, so the issue cannot be changed or dropped, and a token made before
issues were carried (the address alone) still reads, without an issue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
import string
import zlib
from dataclasses import dataclass
from itertools import pairwise

from .errors import NewsletterError, Problem

SECRET_ENV = "NEWSLETTER_SECRET"
# Builds and dry runs are never delivered; they may sign with a known key.
PREVIEW_SECRET = "preview-only-not-for-sending"
# 16 bytes: guessing the key from a received link (every link is an HMAC under
# it) must stay out of reach of anyone's computers.
MIN_SECRET_BITS = 128
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def secret_from_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def signing_key() -> str:
    """The key for what is never delivered to the list (build, preview, dry run, a test copy):
    NEWSLETTER_SECRET when it is set, so that the links work as they will; else the preview key."""
    return secret_from_env() or PREVIEW_SECRET


def secret_bits(secret: str) -> float:
    """A conservative estimate of how many bits of entropy `secret` holds.

    The least of three measures, so that each catches what the others miss:

    - its length times log2 of the pool its characters come from: 16 when
      all are hex digits of one case, 10 when all are digits; otherwise 10
      for any digit, 26 for any lower-case letter, 26 for any upper-case
      letter and 33 for anything else (punctuation, spaces, other scripts),
      added up. Random keys reach exactly this: `secrets.token_hex(16)` is
      32 hex digits, 128 bits;
    - its size compressed with DEFLATE, in bits, which a repeated pattern
      ('aaaa...', 'abcdabcd...') shrinks;
    - the same for the differences between neighbouring characters, which a
      sequence ('abcdef...', '0123...') turns into a repeated pattern.

    No estimate from the key alone can see that a person made it up from
    words or a keyboard walk; the advice is therefore to generate one.
    """
    if not secret:
        return 0.0
    chars = set(secret)
    if chars <= set(string.digits):
        pool = 10
    elif chars <= set("0123456789abcdef") or chars <= set("0123456789ABCDEF"):
        pool = 16
    else:
        pool = sum(
            size
            for alphabet, size in ((string.digits, 10), (string.ascii_lowercase, 26), (string.ascii_uppercase, 26))
            if chars & set(alphabet)
        )
        if chars - set(string.digits + string.ascii_letters):
            pool += 33
    # Lone surrogates are how os.environ carries bytes that are not UTF-8.
    raw = secret.encode("utf-8", "surrogateescape")
    steps = bytes((ord(b) - ord(a)) % 256 for a, b in pairwise(secret))
    return min(len(secret) * math.log2(pool), _deflated_bits(raw), _deflated_bits(raw[:1] + steps))


def secret_problem(secret: str) -> str | None:
    """Why `secret` must not sign the links of a real send, or None when it may.

    The message says what was found, never the secret itself, and how to make
    a good one.
    """
    found = _weakness(secret)
    if found is None:
        return None
    return (
        f"{SECRET_ENV} is too weak to sign unsubscribe links: {found}; anyone with one link "
        f"could find the key and unsubscribe other people. Make one with: {MAKE_SECRET}"
    )


def secret_warnings() -> list[Problem]:
    """For what is never delivered (build, preview, dry run): a weak NEWSLETTER_SECRET, before a send refuses it.

    Without one they sign with the preview key and say nothing: that is what they are for.
    """
    secret = secret_from_env()
    found = _weakness(secret) if secret else None
    if found is None:
        return []
    return [
        Problem(None, f"{SECRET_ENV} is too weak, and a send will refuse it: {found}. Make one with: {MAKE_SECRET}")
    ]


def _weakness(secret: str) -> str | None:
    if secret == PREVIEW_SECRET:
        return "it is the preview key, which is printed in this tool's source code"
    bits = secret_bits(secret)
    if bits >= MIN_SECRET_BITS:
        return None
    return (
        f"its {len(secret)} characters hold about {math.floor(bits)} bits of entropy at most, "
        f"where {MIN_SECRET_BITS} are needed"
    )


def secret_fingerprint(secret: str) -> str:
    """A short tag that tells one secret from another, safe to store (in the send ledger, say).

    An HMAC of a fixed label under the secret, truncated to 64 bits: the same
    secret always gives the same tag, another one almost surely another, and
    going back from tag to secret means guessing the secret, as from any
    unsubscribe link (which a secret that passes `secret_problem` makes
    hopeless). The label holds no NUL and every message a token signs does,
    so no token's signature is ever a fingerprint.
    """
    mac = hmac.new(secret.encode("utf-8", "surrogateescape"), b"newsletter secret fingerprint 1", hashlib.sha256)
    return mac.hexdigest()[:16]


def _deflated_bits(data: bytes) -> float:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw DEFLATE: no header or checksum to count
    empty = 2  # what DEFLATE writes for nothing at all
    return 8.0 * max(0, len(compressor.compress(data) + compressor.flush()) - empty)


@dataclass(frozen=True)
class Signed:
    """What a genuine token says: whom it unsubscribes, and the issue whose link it was (None in older links)."""

    address: str
    issue: str | None = None


def make_token(secret: str, list_id: str, email: str, issue: str | None = None) -> str:
    address = email.strip().lower()
    if "\0" in address or (issue is not None and ("\0" in issue or not issue)):
        # Addresses and issue ids are validated long before; a NUL would make the payload ambiguous.
        raise ValueError("an address or issue id with a NUL, or an empty issue id, cannot be put in a token")
    text = address if issue is None else f"{address}\0{issue}"
    return f"{_payload(text)}.{_signature(secret, list_id, text)}"


def read_token(secret: str, list_id: str, token: str) -> str | None:
    """The address a genuine token was made for; None for anything else, never an exception."""
    signed = read_signed(secret, list_id, token)
    return signed.address if signed else None


def read_signed(secret: str, list_id: str, token: str) -> Signed | None:
    """The address and issue a genuine token was made for; None for anything else, never an exception.

    The token comes from anyone on the web: only the exact form `make_token`
    writes is looked at, so that no input (non-ASCII, NULs, megabytes, stray
    padding) reaches base64, UTF-8 or the comparison in a shape they refuse
    with an exception.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    payload, signature = match.groups()
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    # One address, one token: a payload spelled otherwise (base64 leaves spare bits) is not ours.
    if _payload(text) != payload:
        return None
    if not hmac.compare_digest(signature, _signature(secret, list_id, text)):
        return None
    address, nul, issue = text.partition("\0")
    if nul and (not issue or "\0" in issue):  # make_token writes neither
        return None
    return Signed(address, issue if nul else None)


def unsubscribe_url(pattern: str, secret: str, list_id: str, email: str, issue: str | None = None) -> str:
    return pattern.replace("{token}", make_token(secret, list_id, email, issue))


# An address is at most 254 characters (model.is_email_address), an issue id 100 of up to 4 bytes each
# (slug.MAX_LENGTH): with the NUL between them 655 bytes, 874 in base64.
_MAX_PAYLOAD = 1024
_SIGNATURE_LENGTH = 24  # 18 bytes of HMAC in base64, no padding
_MAX_TOKEN = _MAX_PAYLOAD + 1 + _SIGNATURE_LENGTH
_TOKEN = re.compile(rf"([A-Za-z0-9_-]{{1,{_MAX_PAYLOAD}}})\.([A-Za-z0-9_-]{{{_SIGNATURE_LENGTH}}})")


def _payload(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).rstrip(b"=").decode()


def _signature(secret: str, list_id: str, text: str) -> str:
    key = secret.encode("utf-8", "surrogateescape")
    mac = hmac.new(key, f"{list_id}\0{text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def export_key(secret: str) -> str:
    """The bearer key for `serve`'s suppression export: derived from the signing key, so a `send` on
    another machine that holds that key can read the list of who left, and nobody else can."""
    key = secret.encode("utf-8", "surrogateescape")  # as _signature: a key from os.environ may not be UTF-8
    return hmac.new(key, b"newsletter: suppression export", hashlib.sha256).hexdigest()


def require_secret(
    needed_for: str = "signs each subscriber's unsubscribe link; keep it the same for every issue",
) -> str:
    """NEWSLETTER_SECRET, for what cannot go without a strong one: a real send, `serve`, reading a
    `suppressions_source`. `needed_for` says what the key does here, in the message when it is missing.

    Raises NewsletterError when it is unset, or too weak to keep links from being forged (see `secret_bits`).
    """
    secret = secret_from_env()
    if not secret:
        raise NewsletterError(f"set {SECRET_ENV}: the key that {needed_for} (to make one: {MAKE_SECRET})")
    problem = secret_problem(secret)
    if problem:
        raise NewsletterError(problem)
    return secret
