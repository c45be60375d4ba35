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

import csv
import datetime as dt
import http.client
import io
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import NewsletterError
from .model import is_loopback
from .subscribers import MAX_SUPPRESSION_BYTES, address_key, suppression_address_problem
from .suppressions import EXPORT_COLUMNS, SuppressionStore, Why, cell_value
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
    """The body of a 200 answer to GET `url` with the bearer `key`, read within TIMEOUT and the size bound."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise _failed(url, "must be https (http only to this machine)")  # the model refuses it too
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect(), urllib.request.HTTPSHandler(context=_tls())]
    if is_loopback(parts.hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # this machine is never reached through a proxy
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {key}", "Accept": "text/csv", "User-Agent": "newsletter send"}
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        with opener.open(request, timeout=TIMEOUT) as answer:
            body = bytearray()
            # A server trickling a byte at a time keeps every single read under the timeout: the deadline ends it.
            while chunk := answer.read1(CHUNK):
                body += chunk
                if len(body) > MAX_SUPPRESSION_BYTES:
                    raise _failed(url, f"the answer is larger than {MAX_SUPPRESSION_BYTES:,} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError
            if answer.length:  # what Content-Length promised and never came: http.client reads it as the end
                raise _failed(url, f"the answer broke off {answer.length:,} bytes short of its Content-Length")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        hint = f" (is {SECRET_ENV} the key `serve` uses?)" if exc.code in (401, 403) else ""
        raise _failed(url, f"answered {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise _failed(url, f"its certificate is not trusted: {reason.verify_message}") from None
        raise _failed(url, f"cannot connect: {reason}") from None
    except TimeoutError:
        raise _failed(url, f"no complete answer within {TIMEOUT:g} seconds") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # dropped half-way, a malformed status line
        raise _failed(url, f"the answer broke off: {exc or type(exc).__name__}") from None


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
            try:
                at = dt.datetime.fromisoformat(when).timestamp()
            except ValueError:
                raise _failed(url, f"line {line}: '{when[:40]}' is not a time") from None
            try:
                reason = Why(why)
            except ValueError:
                reason = Why.IMPORT  # a reason a newer `serve` knows: the address still counts
            rows.append((email, at, reason, issue or None))
    except csv.Error as exc:
        raise _failed(url, f"not a readable CSV file: {exc}") from None
    return rows


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # verifies the certificate and the host name


def _failed(url: str, what: str) -> NewsletterError:
    return NewsletterError(
        f"suppressions_source {printable(url)}: {printable(what)}; refusing to send, as it could mail people who left"
    )
