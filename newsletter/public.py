"""The public side of a project: what subscribers reach from a message, and the export for a `send` elsewhere.

A Starlette app, run by `newsletter serve` under uvicorn behind the organisation's TLS proxy. It answers
for the hosts and paths of `unsubscribe_url` and `archive_url` in newsletter.yaml and nothing else:

- the unsubscribe URL: GET shows a page with one button (a GET never unsubscribes: mail scanners
  and link previewers fetch every link); POST `List-Unsubscribe=One-Click` (RFC 8058) records the
  suppression at once; the page's button records it too, then offers an undo for `UNDO_DAYS`;
- `<unsubscribe path>/suppressions.csv`: the suppression store as CSV, for a bearer key derived from
  the secret (`unsubscribe.export_key`);
- everything below the archive URL: `archive.Archive(project).page(...)`.

Tokens carry addresses: the access log writes `…` in their place, and every token page says
Referrer-Policy no-referrer and Cache-Control no-store.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import io
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .archive import Archive
from .errors import NewsletterError, Problem
from .project import Project
from .render import long_date, page_environment
from .share import script_hash
from .suppressions import SuppressionStore, Why, parse_when
from .text import printable
from .unsubscribe import export_key, read_signed

PACKAGE_DIR = Path(__file__).resolve().parent
EXPORT_FILE = "suppressions.csv"
UNDO_DAYS = 7
# A one-click body is 26 bytes and the page's forms not much more: anything near this is not ours.
MAX_BODY = 16 * 1024
# The longest unsubscribe URL fits in a header line (model._unsubscribe_pattern); the archive's are short.
MAX_TARGET = 2048
MAX_FIELDS = 8
ACCESS_LOG = "newsletter.access"

# What a token looks like (unsubscribe.make_token), wherever it turns up in a logged line.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{24}")
_UNDO = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,20})?)\.([A-Za-z0-9_-]{24})")
_SPACE = " \t\r\n"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

log = logging.getLogger(ACCESS_LOG)


# -- where the app answers -----------------------------------------------------


def _hosts(url: str) -> frozenset[str]:
    """The Host headers that name `url`'s host: with its port, and without it when it is the scheme's default."""
    parts = urlsplit(url)
    name = (parts.hostname or "").lower()
    if ":" in name:  # an IPv6 literal keeps its brackets in a Host header
        name = f"[{name}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    port = parts.port or default
    return frozenset({f"{name}:{port}", name} if port == default else {f"{name}:{port}"})


@dataclass(frozen=True)
class UnsubscribePlace:
    """Where `unsubscribe_url` answers, and where in a request its token is: in the path or in a query field."""

    hosts: frozenset[str]
    path: re.Pattern[str]  # the request's path; group "token" when the token is in it
    query_field: str | None  # the query field that holds the token
    query_value: re.Pattern[str] | None
    export_path: str

    @classmethod
    def parse(cls, pattern: str) -> UnsubscribePlace:
        parts = urlsplit(pattern)
        path = unquote(parts.path) or "/"
        if "{token}" in path:
            before, after = path.split("{token}", 1)
            path_re = re.compile(re.escape(before) + r"(?P<token>[^/]*)" + re.escape(after))
            base = before.rpartition("/")[0] + "/"
            return cls(_hosts(pattern), path_re, None, None, base.rstrip("/") + "/" + EXPORT_FILE)
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if "{token}" in value:
                before, after = value.split("{token}", 1)
                value_re = re.compile(re.escape(before) + r"(?P<token>.*)" + re.escape(after), re.DOTALL)
                return cls(
                    _hosts(pattern), re.compile(re.escape(path)), name, value_re, path.rstrip("/") + "/" + EXPORT_FILE
                )
        raise NewsletterError(
            Problem(
                None,
                f"unsubscribe_url {pattern} has {{token}} neither in its path nor in its query: serve cannot find it",
            )
        )

    def redacted(self, path: str) -> str:
        """`path` with the token in it, if any, written `…`: the whole token, however malformed."""
        found = self.path.fullmatch(path) if self.query_field is None else None
        return path if found is None else path[: found.start("token")] + "…" + path[found.end("token") :]

    def token(self, path: str, query: list[tuple[str, str]]) -> str | None:
        """The token of a request to this URL ("" when it has none), or None when the request is for another path."""
        found = self.path.fullmatch(path)
        if found is None:
            return None
        if self.query_field is None:
            return found["token"]
        assert self.query_value is not None
        values = [value for name, value in query if name == self.query_field]
        if len(values) != 1:  # none, or two that could each be believed
            return ""
        match = self.query_value.fullmatch(values[0])
        return match["token"] if match else ""


# The web version of an email: inline styles and remote images, never a form; one script, the archive's own
# (Copy buttons, Mastodon's server), allowed by its hash.
ARCHIVE_CSP = (
    f"default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; script-src {script_hash()}; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
ARCHIVE_REFRESH = 1.0  # seconds: how soon an edited or newly sent issue shows in the archive


@dataclass(frozen=True)
class ArchivePlace:
    hosts: frozenset[str]
    prefix: str  # the archive URL's path, ending in /

    @classmethod
    def parse(cls, url: str) -> ArchivePlace:
        path = unquote(urlsplit(url).path)
        return cls(_hosts(url), path.rstrip("/") + "/")


# -- the undo of the page's unsubscribe -----------------------------------------


def make_undo(secret: str, list_id: str, address: str, at: float) -> str:
    """A key for undoing the suppression of `address` recorded at `at`: only that one, only for a while."""
    stamp = repr(at)
    return f"{stamp}.{_undo_signature(secret, list_id, address, stamp)}"


def read_undo(secret: str, list_id: str, address: str, undo: str, now: float) -> float | None:
    """The time of the suppression a genuine, unexpired undo key is for; None for anything else."""
    match = _UNDO.fullmatch(undo) if len(undo) < 64 else None
    if match is None:
        return None
    stamp, signature = match.groups()
    if not hmac.compare_digest(signature, _undo_signature(secret, list_id, address, stamp)):
        return None
    at = float(stamp)
    if not math.isfinite(at) or not (now - UNDO_DAYS * 86400 <= at <= now + 60):
        return None
    return at


def _undo_signature(secret: str, list_id: str, address: str, stamp: str) -> str:
    # A label with a space, which no list id holds, keeps these apart from the tokens' signatures.
    message = f"newsletter undo\0{list_id}\0{address}\0{stamp}".encode()
    mac = hmac.new(secret.encode("utf-8", "surrogateescape"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


# -- pages -----------------------------------------------------------------------


class Pages:
    """The app's own pages, in the newsletter's look: a sandboxed, autoescaped Jinja template."""

    def __init__(self, project: Project) -> None:
        env = page_environment(PACKAGE_DIR)
        site = project.site
        self.site = site
        # One stylesheet for every page, inline and allowed by its hash: no file to serve, no 'unsafe-inline'.
        self.css = env.get_template("public.css.j2").render(theme=site.theme)
        digest = base64.b64encode(hashlib.sha256(self.css.encode()).digest()).decode()
        self.csp = (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src https:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        self.template = env.get_template("public.html.j2")
        self.list_name = f"{site.from_.name} ({site.list_identifier})"
        self.contact = site.reply_to or site.from_.email

    def render(self, kind: str, title: str, **values: object) -> str:
        return self.template.render(
            kind=kind,
            title=title,
            site=self.site,
            theme=self.site.theme,
            css=Markup(self.css),  # CSS of the theme's validated colours; escaping would break it
            list_name=self.list_name,
            contact=self.contact,
            **{"address": "", "message": "", "undo": "", "undo_until": "", **values},
        )


# -- the app -------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class Public:
    """The ASGI endpoint behind every path: it routes by Host and path itself, so nothing else answers."""

    def __init__(self, project: Project, secret: str) -> None:
        site = project.site
        self.project = project
        self.secret = secret
        self.list_id = site.list_identifier
        self.unsubscribe = UnsubscribePlace.parse(site.unsubscribe_url)
        self.archive_place = ArchivePlace.parse(site.archive_url) if site.archive_url else None
        self.archive = Archive(project) if site.archive_url else None
        self._archive_checked = -ARCHIVE_REFRESH
        self._archive_refresh: asyncio.Future | None = None  # the one look at the files under way, if any
        self._archive_built = False
        self.export_key = export_key(secret).encode()
        self.pages = Pages(project)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.answer(request)
        except ClientDisconnect:  # gone before its body came in full: nobody to answer, nothing done
            return
        except _Refused as refused:
            response = self.page(refused.status, "other", refused.title, message=refused.message)
        except NewsletterError as exc:
            # The project's own files failed it (a damaged store, a full disk): the problem in one line, which
            # names the file, and a page that says nothing was done, so that a mail client may try again.
            log.error("error: %s", printable(str(exc)))
            response = self.page(
                500,
                "other",
                "Something went wrong",
                message=f"Nothing was changed; please try again later, or write to {self.pages.contact}.",
                token_page=True,
            )
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        scope = request.scope
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_TARGET:
            raise _Refused(414, "Address too long", "This address is too long to be one of ours.")
        host = (request.headers.get("host") or "").lower()
        path: str = scope["path"]
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True, errors="replace")
        if host in self.unsubscribe.hosts:
            if path == self.unsubscribe.export_path:
                return await self.export(request, query)
            token = self.unsubscribe.token(path, query)
            if token is not None:
                return await self.unsubscribe_page(request, token)
        place = self.archive_place
        if place is not None and host in place.hosts:
            if path + "/" == place.prefix:
                return Response(status_code=308, headers={"Location": place.prefix})
            if path.startswith(place.prefix):
                return await self.archive_page(request, path[len(place.prefix) :])
        if host not in self.unsubscribe.hosts and (place is None or host not in place.hosts):
            raise _Refused(400, "Unknown site", "This server does not answer for that site.")
        raise _Refused(404, "Page not found", "There is no page at this address.")

    # -- unsubscribe -----------------------------------------------------------------

    async def unsubscribe_page(self, request: Request, token: str) -> Response:
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            raise _Refused(405, "Not allowed", "This address takes GET and POST only.")
        signed = read_signed(self.secret, self.list_id, token)
        if signed is None:
            if method == "POST":
                await _read_body(request)  # said too large when it is, before saying invalid
            return self.page(400, "invalid", "This link is not valid", token_page=True)
        address, issue = signed.address, signed.issue
        if method != "POST":
            return self.page(200, "confirm", "Unsubscribe", address=address, token_page=True)
        form = await _read_form(request)
        if form.get("List-Unsubscribe") == "One-Click":
            await run_in_threadpool(self._suppress, address, Why.ONE_CLICK, time.time(), issue)
            return self.page(200, "done", "You are unsubscribed", address=address, token_page=True)
        action = form.get("action")
        if action == "unsubscribe":
            at = time.time()
            new = await run_in_threadpool(self._suppress, address, Why.PAGE, at, issue)
            undo = make_undo(self.secret, self.list_id, address, at) if new else ""
            until = long_date(dt.datetime.fromtimestamp(at + UNDO_DAYS * 86400, dt.UTC))
            return self.page(
                200, "done", "You are unsubscribed", address=address, undo=undo, undo_until=until, token_page=True
            )
        if action == "undo":
            at = read_undo(self.secret, self.list_id, address, form.get("undo", ""), time.time())
            if at is None or not await run_in_threadpool(self._undo, address, at):
                return self.page(
                    400,
                    "other",
                    "This cannot be undone",
                    message="The undo has expired or is not for this unsubscribe; you are still unsubscribed. "
                    f"To subscribe again, write to {self.pages.contact}.",
                    token_page=True,
                )
            return self.page(200, "undone", "You are subscribed again", address=address, token_page=True)
        raise _Refused(400, "Unknown request", "The request did not say what to do; nothing was changed.")

    def _suppress(self, address: str, why: Why, at: float, issue: str | None) -> bool:
        # One store per request: SQLite's WAL and busy timeout let workers and processes write at once.
        with SuppressionStore.open(self.project.root) as store:
            return store.add(address, why, at=at, issue=issue)

    def _undo(self, address: str, at: float) -> bool:
        with SuppressionStore.open(self.project.root) as store:
            # Only the suppression this page recorded, in one statement: a bounce or a manual record that
            # came before or after (and replaced it, SuppressionStore.add) stays.
            return store.remove_if(address, Why.PAGE, at)

    # -- export ---------------------------------------------------------------------

    async def export(self, request: Request, query: list[tuple[str, str]]) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _Refused(405, "Not allowed", "This address takes GET only.")
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode("latin-1"), self.export_key):
            response = self.page(401, "other", "Key needed", message="This list needs the export key.")
            response.headers["WWW-Authenticate"] = 'Bearer realm="suppressions"'
            return response
        since = None
        values = [value for name, value in query if name == "since"]
        if values:
            since = parse_when(values[-1])
            if since is None:
                raise _Refused(400, "Bad date", "since= must be a date or time in ISO 8601, such as 2024-05-01T00:00Z.")
        body = await run_in_threadpool(self._csv, since)
        return Response(body, media_type="text/csv; charset=utf-8", headers={"Cache-Control": "no-store"})

    def _csv(self, since: float | None) -> str:
        out = io.StringIO()
        with SuppressionStore.open(self.project.root) as store:
            store.export_csv(out, since)
        return out.getvalue()

    # -- archive ---------------------------------------------------------------------

    async def archive_page(self, request: Request, relative: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _Refused(405, "Not allowed", "The archive takes GET only.")
        raw = (request.scope.get("raw_path") or b"").lower()
        segments = relative.split("/")
        # Never a path outside the archive, nor one that means another: '..', '.', '//', '\', NUL, an encoded '/'.
        if (
            b"%2f" in raw
            or b"%5c" in raw
            or any(c in relative for c in "\\\0")
            or any(s in ("..", ".") for s in segments)
            or "" in segments[:-1]
        ):
            raise _Refused(404, "Page not found", "There is no page at this address.")
        assert self.archive is not None
        await self._refresh_archive()
        found = self.archive.page(relative, refresh=False, decoded=True)
        if found is None:
            raise _Refused(404, "Page not found", "There is no page at this address.")
        return Response(
            found.body,
            headers={
                "Content-Type": found.content_type,
                "Content-Security-Policy": ARCHIVE_CSP,
            },
        )

    async def _refresh_archive(self) -> None:
        """Look at the files (and render what changed) off the event loop, at most once per ARCHIVE_REFRESH and one
        look at a time: the request that starts a look waits for it; the others, meanwhile and between times, answer
        at once from the pages already built, which keeps the p99 low (but for the first look, before which
        nothing is built)."""
        assert self.archive is not None
        looking = self._archive_refresh
        if looking is None and time.monotonic() - self._archive_checked >= ARCHIVE_REFRESH:
            self._archive_checked = time.monotonic()  # before the await: no request meanwhile starts another
            looking = self._archive_refresh = asyncio.ensure_future(run_in_threadpool(self.archive.pages))
            looking.add_done_callback(self._archive_looked)
        elif looking is None or self._archive_built:
            return
        # Shielded: a client that leaves does not stop the look the others wait for.
        await asyncio.shield(looking)

    def _archive_looked(self, looking: asyncio.Future) -> None:
        self._archive_refresh = None
        # A failed look was answered to whoever waited for it (a 500); retrieving it here keeps asyncio quiet
        # when nobody did, and the next request looks again.
        if not looking.cancelled() and looking.exception() is None:
            self._archive_built = True

    def page(self, status: int, kind: str, title: str, *, token_page: bool = False, **values: object) -> Response:
        body = self.pages.render(kind, title, **values)
        response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store" if token_page else "no-cache"
        return response


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit()):
        raise _Refused(400, "Bad request", "The request's Content-Length is not a number; nothing was changed.")
    if length is not None and int(length) > MAX_BODY:
        raise _Refused(413, "Too large", "This request is larger than any this address takes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _Refused(413, "Too large", "This request is larger than any this address takes.")
    return bytes(body)


def _replay(body: bytes) -> Receive:
    """An ASGI receive that gives `body` again, for a parser that reads the request itself."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _read_form(request: Request) -> dict[str, str]:
    """The POSTed form's text fields (the last of each name), after the size check; {} for anything else.

    Names and values lose the spaces and line breaks around them: mail clients' one-click POSTs vary
    (`List-Unsubscribe=One-Click` with a CRLF after it, say), and none of our fields means anything with them.
    """
    body = await _read_body(request)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in _FORM_TYPES:
        raise _Refused(
            415, "Not a form", "This address takes a form (application/x-www-form-urlencoded or multipart/form-data)."
        )
    try:
        if media_type == _FORM_TYPES[0]:
            pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        else:
            async with Request(request.scope, _replay(body)).form(max_files=0, max_fields=MAX_FIELDS) as form:
                pairs = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
        return {name.strip(_SPACE): value.strip(_SPACE) for name, value in pairs}
    except (ValueError, HTTPException):
        raise _Refused(400, "Bad form", "The form could not be read; nothing was changed.") from None


# -- what every response carries, and the access log ------------------------------------


class Guard:
    """Security headers on every response (the app's own and a crash's 500), and an access log without tokens."""

    def __init__(self, app: ASGIApp, csp: str, place: UnsubscribePlace) -> None:
        self.app = app
        self.place = place
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            # The page's URL carries the token: no Referer may take it to a logo's or a link's site.
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | str = "-"  # no answer: the client left first

        async def send_guarded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = Headers(raw=message["headers"])
                message["headers"] = list(message["headers"]) + [
                    (name, value) for name, value in self.headers if name.decode() not in present
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        finally:
            log.info("%s %s %s", scope["method"], logged_target(scope, self.place), status)


def logged_target(scope: Scope, place: UnsubscribePlace) -> str:
    """The request's path as the log shows it: no query (a token may be in it), no token, nothing a terminal obeys."""
    shown = _TOKEN_LIKE.sub("…", place.redacted(scope["path"]))[:200]
    if scope.get("query_string"):
        shown += "?…"
    return printable(shown)


def make_app(project: Project, secret: str) -> ASGIApp:
    public = Public(project, secret)
    app = Starlette(routes=[Route("/{rest:path}", public)])
    return Guard(app, public.pages.csp, public.unsubscribe)
