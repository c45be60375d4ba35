"""Connecting to the organisation's SMTP relay, safely.

Certificates are always verified. Plain connections (`security: none`) and
passwords over an unencrypted connection are allowed only to this machine
(a local relay or a test server), never across a network.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from . import connection
from .connection import ConnectFailed, ca_file_from, env_port, tls_context
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
    port = env_port(env, ENV + "PORT", site_smtp.port)
    security = env.get(ENV + "SECURITY") or site_smtp.security
    if security not in ("starttls", "ssl", "none"):
        raise NewsletterError(f"{ENV}SECURITY must be starttls, ssl or none, not {security!r}")
    settings = Settings(
        host=env.get(ENV + "HOST") or site_smtp.host,
        port=port,
        security=security,
        username=env.get(ENV + "USERNAME") or site_smtp.username,
        password=env.get(ENV + "PASSWORD") or None,
        ca_file=ca_file_from(env, ENV + "CA_FILE", ca_file),
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
    return connection.redact(text, settings.username, settings.password)


def _open(settings: Settings) -> smtplib.SMTP:
    if settings.security == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=tls_context(settings.ca_file)
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
            smtp.starttls(context=tls_context(settings.ca_file))
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
