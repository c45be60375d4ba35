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

SECRET_ENV = "NEWSLETTER_SECRET"
# Builds and dry runs are never delivered; they may sign with a known key.
PREVIEW_SECRET = "preview-only-not-for-sending"


def secret_from_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def make_token(secret: str, list_id: str, email: str) -> str:
    address = email.strip().lower()
    payload = base64.urlsafe_b64encode(address.encode()).rstrip(b"=").decode()
    return f"{payload}.{_signature(secret, list_id, address)}"


def read_token(secret: str, list_id: str, token: str) -> str | None:
    """The address a genuine token was made for, or None for a forged one."""
    payload, _, signature = token.partition(".")
    try:
        address = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if hmac.compare_digest(signature, _signature(secret, list_id, address)):
        return address
    return None


def unsubscribe_url(pattern: str, secret: str, list_id: str, email: str) -> str:
    return pattern.replace("{token}", make_token(secret, list_id, email))


def _signature(secret: str, list_id: str, address: str) -> str:
    mac = hmac.new(secret.encode(), f"{list_id}\0{address}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()
