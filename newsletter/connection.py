"""What connecting to the organisation's mail servers shares, the SMTP relay (`smtp`) and the IMAP mailbox
(`imap`) alike: settings overridden from the environment, verified TLS with an optional private CA, and keeping
the password out of whatever is shown."""

from __future__ import annotations

import base64
import contextlib
import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from .errors import NewsletterError


class ConnectFailed(NewsletterError):
    """A server that cannot be used now; `retry` says whether trying again later could help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """The port in the environment variable `name`, else `default`."""
    text = env.get(name)
    if not text:
        return default
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:  # beyond 65535 the socket layer would refuse it, or silently wrap it
        raise NewsletterError(f"{name} must be a port number from 1 to 65535, not {text!r}")
    return port


def ca_file_from(env: Mapping[str, str], name: str, ca_file: Path | None) -> Path | None:
    """The CA to trust besides the system's: `--ca-file`, else the environment variable `name`; checked now."""
    ca = ca_file or (Path(env[name]) if env.get(name) else None)
    if ca is not None:
        check_ca_file(ca, "--ca-file" if ca_file else name)
    return ca


def check_ca_file(path: Path, given_as: str) -> None:
    """Load the CA file now: a wrong one would otherwise show up only at connect time, looking
    like a server that cannot be reached, and be retried for nothing."""
    _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path, given_as)


def _load_ca(context: ssl.SSLContext, path: Path, given_as: str) -> None:
    where = f"{given_as} {path}"
    if not path.exists():
        raise NewsletterError(f"{where}: no such file")
    if not path.is_file():  # a folder, a FIFO, /dev/zero: never read it
        raise NewsletterError(f"{where}: not a PEM certificate (it is {'a folder' if path.is_dir() else 'not a file'})")
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        with contextlib.suppress(OSError), path.open("rb") as file:
            if file.read(2) in (b"\x30\x81", b"\x30\x82", b"\x30\x83"):  # a long ASN.1 SEQUENCE: DER
                raise NewsletterError(
                    f"{where}: not a PEM certificate (it looks like DER; convert it with: "
                    f"openssl x509 -inform der -in {path} -out {path}.pem)"
                ) from None
        reason = exc.reason.replace("_", " ").lower() if exc.reason else "unreadable PEM"
        raise NewsletterError(f"{where}: not a PEM certificate ({reason})") from None
    except OSError as exc:
        raise NewsletterError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if not context.cert_store_stats()["x509"]:
        raise NewsletterError(f"{where}: not a PEM certificate (no certificate in it)")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates verified, host names checked: the system's CAs, and `ca_file`'s too when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        # Checked when the settings were made; a file changed since is still a message, never a retry.
        _load_ca(context, ca_file, "CA file")
    return context


def redact(text: str, username: str | None, password: str | None) -> str:
    """`text` without the password in any form it crosses the wire in: in the clear (IMAP LOGIN, or a server
    that decoded it), or base64 (SMTP's AUTH LOGIN line, and the PLAIN initial response of SMTP and IMAP)."""
    if not password:
        return text
    user, secret = (username or "").encode(), password.encode()
    encoded = [
        base64.b64encode(secret).decode(),  # the AUTH LOGIN password line
        base64.b64encode(b"\0" + user + b"\0" + secret).decode(),  # the AUTH PLAIN initial response
    ]
    # Base64 with and without its padding, as sent (it is case-sensitive); the longest first, so
    # that no part of a longer form is left behind.
    forms = sorted({*encoded, *(e.rstrip("=") for e in encoded)}, key=len, reverse=True)
    text = re.sub("|".join(map(re.escape, forms)), "***", text)
    # The clear password as a server that decoded it may repeat it, in any letter case; a short one
    # only as written, or every reply would lose its letters and digits to the stars.
    clear = re.escape(password)
    return re.sub(clear, "***", text, flags=re.IGNORECASE if len(password) >= 8 else 0)
