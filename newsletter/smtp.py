"""Connecting to the organisation's SMTP relay, safely.

Certificates are always verified. Plain connections (`security: none`) and
passwords over an unencrypted connection are allowed only to this machine
(a local relay or a test server), never across a network.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import smtplib
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import NewsletterError
from .model import Smtp, is_loopback
from .text import printable

ENV = "NEWSLETTER_SMTP_"
TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = TIMEOUT

    def __repr__(self) -> str:  # never show the password, even in a debugger or log
        shown = "***" if self.password else None
        return (
            f"Settings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, password={shown})"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


def settings_from(site_smtp: Smtp, ca_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """The site file's `smtp:` section with NEWSLETTER_SMTP_* environment overrides."""
    env = os.environ if environ is None else environ
    port_text = env.get(ENV + "PORT")
    port = site_smtp.port
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:  # beyond 65535 the socket layer would refuse it, or silently wrap it
            raise NewsletterError(f"{ENV}PORT must be a port number from 1 to 65535, not {port_text!r}")
    security = env.get(ENV + "SECURITY") or site_smtp.security
    if security not in ("starttls", "ssl", "none"):
        raise NewsletterError(f"{ENV}SECURITY must be starttls, ssl or none, not {security!r}")
    ca = ca_file or (Path(env[ENV + "CA_FILE"]) if env.get(ENV + "CA_FILE") else None)
    if ca is not None:
        check_ca_file(ca, "--ca-file" if ca_file else ENV + "CA_FILE")
    settings = Settings(
        host=env.get(ENV + "HOST") or site_smtp.host,
        port=port,
        security=security,
        username=env.get(ENV + "USERNAME") or site_smtp.username,
        password=env.get(ENV + "PASSWORD") or None,
        ca_file=ca,
    )
    check_safe(settings)
    return settings


def with_password(settings: Settings, password: str | None) -> Settings:
    return replace(settings, password=password)


def check_safe(settings: Settings) -> None:
    """Refuse what would send mail or a password in the clear across a network."""
    if settings.security == "none" and not is_loopback(settings.host):
        raise NewsletterError(
            f"security: none sends everything unencrypted; it is allowed only to this machine, not to {settings.host}"
        )


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


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        # Checked when the settings were made; a file changed since is still a message, never a retry.
        _load_ca(context, settings.ca_file, "CA file")
    return context


class ConnectFailed(NewsletterError):
    """Raised by `connect`; `retry` says whether trying again later could help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def connect(settings: Settings) -> smtplib.SMTP:
    """An open, authenticated connection, or ConnectFailed saying why not, in words for people.

    The server's words in the message are redacted (`reply_text`) and escaped for a terminal.
    """
    try:
        return _open(settings)
    except smtplib.SMTPAuthenticationError as exc:
        message = f"the server refused the login: {_says(exc, settings)}"
        raise ConnectFailed(message, retry=False) from None
    except ssl.SSLCertVerificationError as exc:
        message = f"{settings.address}: the server's certificate is not trusted: {exc.verify_message}"
        raise ConnectFailed(message, retry=False) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise ConnectFailed(str(exc), retry=False) from None
    except UnicodeError as exc:  # a host name IDNA cannot encode
        raise ConnectFailed(f"cannot connect to {settings.address}: {exc}", retry=False) from None
    except smtplib.SMTPResponseException as exc:
        # Refused in the greeting, or in answer to EHLO/HELO or STARTTLS: 4xx means "not now", 5xx "never".
        if 500 <= exc.smtp_code <= 599:
            message = f"{settings.address} refused the connection: {_says(exc, settings)}"
            raise ConnectFailed(message, retry=False) from None
        raise ConnectFailed(f"cannot reach {settings.address}: {_says(exc, settings)}", retry=True) from None
    except (smtplib.SMTPException, OSError) as exc:  # down, refusing, timing out: it may come back
        raise ConnectFailed(f"cannot reach {settings.address}: {exc}", retry=True) from None


def _says(exc: smtplib.SMTPResponseException, settings: Settings) -> str:
    return shown_reply(exc.smtp_code, exc.smtp_error, settings)


def shown_reply(code: int, raw: bytes | str, settings: Settings) -> str:
    """A server's reply fit to print in a message: without the password, escaped for a terminal."""
    return printable(f"{code} {reply_text(raw, settings)}")


def reply_text(raw: bytes | str, settings: Settings) -> str:
    """A server's reply as text, whatever bytes it sent, without the password of `settings`.

    Some servers repeat what the client sent in their reply, the AUTH exchange included: every
    reply that is shown or stored goes through here with the settings it was received with.
    """
    return redact(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), settings)


def redact(text: str, settings: Settings) -> str:
    """`text` without the password in any form it crossed the wire in (see `_login`)."""
    if not settings.password:
        return text
    user, password = (settings.username or "").encode(), settings.password.encode()
    encoded = [
        base64.b64encode(password).decode(),  # the AUTH LOGIN password line
        base64.b64encode(b"\0" + user + b"\0" + password).decode(),  # the AUTH PLAIN initial response
    ]
    # Base64 with and without its padding, as sent (it is case-sensitive); the longest first, so
    # that no part of a longer form is left behind.
    forms = sorted({*encoded, *(e.rstrip("=") for e in encoded)}, key=len, reverse=True)
    text = re.sub("|".join(map(re.escape, forms)), "***", text)
    # The clear password as a server that decoded it may repeat it, in any letter case; a short one
    # only as written, or every reply would lose its letters and digits to the stars.
    clear = re.escape(settings.password)
    return re.sub(clear, "***", text, flags=re.IGNORECASE if len(settings.password) >= 8 else 0)


def _open(settings: Settings) -> smtplib.SMTP:
    if settings.security == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=tls_context(settings)
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        # Unlike a bare ehlo(), this raises SMTPHeloError when the server refuses both EHLO and HELO.
        smtp.ehlo_or_helo_if_needed()
        if settings.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    f"{settings.host} does not offer STARTTLS; refusing to send unencrypted"
                )
            smtp.starttls(context=tls_context(settings))
            smtp.ehlo_or_helo_if_needed()
        if settings.username:
            if settings.security == "none" and not is_loopback(settings.host):  # check_safe already refuses this
                raise NewsletterError("refusing to send a password over an unencrypted connection")
            _login(smtp, settings.username, settings.password or "")
    except BaseException:
        close(smtp)
        raise
    return smtp


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """One AUTH attempt with the best mechanism offered.

    smtplib's `login` tries every mechanism in turn after a refusal; some
    servers then wait for input that never comes, so a wrong password would
    hang until the timeout instead of failing at once.
    """
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if not offered:
        raise smtplib.SMTPNotSupportedError(f"the server does not offer AUTH, but a username ({username}) is set")
    if not (username + password).isascii():
        # smtplib sends AUTH as ASCII and would fail deep inside with a UnicodeEncodeError.
        raise NewsletterError("the SMTP username and password must be ASCII characters only")
    smtp.user, smtp.password = username, password
    for mechanism, method in (("PLAIN", smtp.auth_plain), ("LOGIN", smtp.auth_login), ("CRAM-MD5", smtp.auth_cram_md5)):
        if mechanism in offered:
            smtp.auth(mechanism, method, initial_response_ok=mechanism != "LOGIN")
            return
    raise smtplib.SMTPNotSupportedError(f"no AUTH mechanism in common with the server (it offers {' '.join(offered)})")


def close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        with contextlib.suppress(OSError):
            smtp.close()
