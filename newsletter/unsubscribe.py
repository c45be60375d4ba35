"""Signed per-subscriber unsubscribe tokens.

The unsubscribe page receives the token and must be able to trust it without
a database lookup and without letting anyone unsubscribe someone else: the
token carries the address and an HMAC over it, keyed by NEWSLETTER_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

SECRET_ENV = "NEWSLETTER_SECRET"
# Builds and dry runs are never delivered; they may sign with a known key.
PREVIEW_SECRET = "preview-only-not-for-sending"


def secret_from_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def make_token(secret: str, list_id: str, email: str) -> str:
    address = email.strip().lower()
    return f"{_payload(address)}.{_signature(secret, list_id, address)}"


def read_token(secret: str, list_id: str, token: str) -> str | None:
    """The address a genuine token was made for; None for anything else, never an exception.

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
        address = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    # One address, one token: a payload spelled otherwise (base64 leaves spare bits) is not ours.
    if _payload(address) != payload:
        return None
    if hmac.compare_digest(signature, _signature(secret, list_id, address)):
        return address
    return None


def unsubscribe_url(pattern: str, secret: str, list_id: str, email: str) -> str:
    return pattern.replace("{token}", make_token(secret, list_id, email))


# An address is at most 254 characters (model.is_email_address): 340 in base64.
_MAX_PAYLOAD = 1024
_SIGNATURE_LENGTH = 24  # 18 bytes of HMAC in base64, no padding
_MAX_TOKEN = _MAX_PAYLOAD + 1 + _SIGNATURE_LENGTH
_TOKEN = re.compile(rf"([A-Za-z0-9_-]{{1,{_MAX_PAYLOAD}}})\.([A-Za-z0-9_-]{{{_SIGNATURE_LENGTH}}})")


def _payload(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).rstrip(b"=").decode()


def _signature(secret: str, list_id: str, address: str) -> str:
    mac = hmac.new(secret.encode(), f"{list_id}\0{address}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()
