"""Reading who left from another machine: the `suppressions_source` of newsletter.yaml.

`serve` exports its suppression store (`GET .../suppressions.csv`, a bearer
key derived from NEWSLETTER_SECRET); a `send` elsewhere reads it before it
plans anything, and refuses to send when it cannot: failing open would mail
people who left. Each address it lists is recorded in the local store with
the reason, time and issue the export gives, so that `suppressions list`
and `export` show them here too.

The request goes over HTTPS with verified certificates (plain http only to
this machine), follows no redirect (it would carry the key elsewhere), and
is bounded in time and size: a server that stalls or streams forever ends
in an error naming it, not in a hang.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import NewsletterError
from .model import is_loopback
from .subscribers import MAX_SUPPRESSION_BYTES, address_key, suppression_address, suppression_address_problem
from .suppressions import EXPORT_COLUMNS, SuppressionStore, Why, cell_value, parse_when
from .text import printable
from .unsubscribe import SECRET_ENV, export_key, require_secret

TIMEOUT = 20.0  # seconds for the whole answer; a export of 100,000 rows is a few megabytes
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    url: str
    keys: set[str]  # subscribers.address_key of every address listed
    new: int  # how many of them the local store did not have yet


def fetch_into(store: SuppressionStore, url: str) -> Fetched:
    """Read the export at `url` and record every address in `store`; what it listed.

    Raises NewsletterError, naming the URL and what went wrong, for anything
    short of a complete, well-formed export: no key, no answer, a refusal, a
    redirect, a body that is too large or is not the export's CSV.
    """
    rows = parse_export(url, download(url, bearer_key()))
    new = 0
    keys: set[str] = set()
    for email, at, why, issue in rows:
        keys.add(address_key(email))
        new += store.add(email, why, issue=issue, at=at, evidence={"source": url})
    return Fetched(url, keys, new)


def bearer_key() -> str:
    """The export's key, from the real signing key: a preview or weak key cannot read who left."""
    return export_key(require_secret("reads the suppressions_source export (the one `serve` uses)"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # urllib would send the Authorization header along to wherever it points.
        raise _failed(req.full_url, f"answered {code} with a redirect to {newurl}; write the address it points to")


def download(url: str, key: str) -> bytes:
    """The body of a 200 answer to GET `url` with the bearer `key`, all of it within TIMEOUT and the size bound."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise _failed(url, "must be https (http only to this machine)")  # the model refuses it too
    with _Deadline(TIMEOUT) as deadline:
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect(), _HTTP(deadline), _HTTPS(deadline)]
        if is_loopback(parts.hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))  # this machine is never reached through a proxy
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {key}", "Accept": "text/csv", "User-Agent": "newsletter send"}
        )
        try:
            with opener.open(request, timeout=deadline.left()) as answer:
                body = bytearray()
                while chunk := answer.read1(CHUNK):
                    body += chunk
                    if len(body) > MAX_SUPPRESSION_BYTES:
                        raise _failed(url, f"the answer is larger than {MAX_SUPPRESSION_BYTES:,} bytes")
                if deadline.expired:  # the end of the body, or the deadline shutting the socket?
                    raise TimeoutError
                if answer.length:  # what Content-Length promised and never came: http.client reads it as the end
                    raise _failed(url, f"the answer broke off {answer.length:,} bytes short of its Content-Length")
                return bytes(body)
        except NewsletterError:
            raise
        except Exception as exc:
            if deadline.expired:  # whatever a shut socket looked like to the layer that was reading it
                raise _failed(url, f"no complete answer within {TIMEOUT:g} seconds") from None
            raise _explained(url, exc) from None


def _explained(url: str, exc: Exception) -> NewsletterError:
    """What went wrong with the request, in a line for the person sending."""
    if isinstance(exc, urllib.error.HTTPError):
        hint = f" (is {SECRET_ENV} the key `serve` uses?)" if exc.code in (401, 403) else ""
        return _failed(url, f"answered {exc.code} {exc.reason}{hint}")
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return _failed(url, f"its certificate is not trusted: {reason.verify_message}")
        if isinstance(reason, TimeoutError):
            return _failed(url, f"no complete answer within {TIMEOUT:g} seconds")
        return _failed(url, f"cannot connect: {reason}")
    if isinstance(exc, TimeoutError):
        return _failed(url, f"no complete answer within {TIMEOUT:g} seconds")
    if isinstance(exc, OSError | ValueError | http.client.HTTPException):  # dropped half-way, a bad status line
        return _failed(url, f"the answer broke off: {exc or type(exc).__name__}")
    raise exc


class _Deadline:
    """The time limit of the whole fetch, however the server spreads its bytes: each connection gets the time
    left as its timeout, and when none is left every socket is shut, ending the read that waits on it (a
    server trickling a byte a second keeps every single read under any per-read timeout)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def left(self) -> float:
        return max(0.001, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _bounded(base: type[http.client.HTTPConnection], deadline: _Deadline) -> type[http.client.HTTPConnection]:
    class Connection(base):  # type: ignore[valid-type, misc]
        def connect(self) -> None:
            self.timeout = deadline.left()  # connecting (and a TLS handshake) within the time left
            super().connect()
            deadline.watch(self.sock)

    return Connection


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPConnection, self.deadline), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__(context=_tls())
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPSConnection, self.deadline), req, context=self._context)


def parse_export(url: str, body: bytes) -> list[tuple[str, float, Why, str | None]]:
    """The rows of an export as `SuppressionStore.export_csv` writes it: email, when, why, issue.

    Every line must be one: a garbled answer (an HTML login page, a cut-off
    file) is refused whole, not half-read.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _failed(url, "the answer is not UTF-8 text: not a suppression export") from None
    if text and not text.endswith("\n"):
        raise _failed(url, "the answer was cut off (its last line is not complete)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or tuple(header) != EXPORT_COLUMNS:
            shown = ",".join(header)[:60] if header else "nothing"
            raise _failed(url, f"not a suppression export: its first line is '{shown}', not {','.join(EXPORT_COLUMNS)}")
        rows = []
        for cells in reader:
            line = reader.line_num
            if len(cells) != len(EXPORT_COLUMNS):
                raise _failed(url, f"line {line}: {len(cells)} fields where {len(EXPORT_COLUMNS)} are expected")
            # The export writes a `'` before what a spreadsheet would run as a formula (`suppressions.csv_cell`).
            email, when, why, issue = (cell_value(cell) for cell in cells)
            problem = suppression_address_problem(email)
            if problem:
                raise _failed(url, f"line {line}: {problem}")
            at = parse_when(when)
            if at is None:
                raise _failed(url, f"line {line}: '{when[:40]}' is not a time")
            try:
                reason = Why(why)
            except ValueError:
                reason = Why.IMPORT  # a reason a newer `serve` knows: the address still counts
            # `Ann <ann@example.org>` is ann@example.org: keyed whole, it would never match her.
            rows.append((suppression_address(email), at, reason, issue or None))
    except csv.Error as exc:
        raise _failed(url, f"not a readable CSV file: {exc}") from None
    return rows


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # verifies the certificate and the host name


def _failed(url: str, what: str) -> NewsletterError:
    return NewsletterError(
        f"suppressions_source {printable(url)}: {printable(what)}; refusing to send, as it could mail people who left"
    )
