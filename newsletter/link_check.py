"""`check --links`: fetch every link and image of an issue, as a reader's click would, before anyone is mailed.

Each address is asked once however often it is written (HEAD first, GET when
a server refuses HEAD or answers it with an error, as browsers only GET), a
few at a time, each within a time limit, following redirects. A dead one is an
error at every place it is written; a redirect and an image too heavy to send
to every subscriber are warnings.

A redirect is followed only while it stays on the web (`redirect_refusal`): a
page is asked to redirect anywhere, and the checker runs where the advisor
works. A user name and password in an address are never printed.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from . import __version__
from .errors import Problem
from .html_scan import scan
from .markdown import issue_links
from .message import Composer
from .pipeline import TYPICAL_SUBSCRIBER, Checked
from .render import HTML_TEMPLATE
from .unsubscribe import PREVIEW_SECRET

DEFAULT_TIMEOUT = 10.0  # seconds for each address, redirects included
AT_ONCE = 4  # requests in flight: enough to be quick, few enough not to look like an attack
MAX_REDIRECTS = 10
IMAGE_BYTES = 200 * 1024  # an image above this is downloaded by every subscriber who opens the email
USER_AGENT = f"newsletter-link-check/{__version__} (checks the links of an email newsletter before it is sent)"

Place = Callable[[str], Problem]  # where an address is written: makes the problem to report there
Address = IPv4Address | IPv6Address
# The user name and password of an address (https://ann:secret@host/), wherever one is in a message.
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@", re.IGNORECASE)


@dataclass
class Target:
    url: str
    image: bool = False
    places: list[Place] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    url: str
    dead: str | None = None  # why, when the address does not answer with a page
    final: str | None = None  # where redirects led, when they did
    status: int | None = None  # the first redirect's, when redirected
    size: int | None = None  # an image's bytes, when known
    partly: bool = False  # `size` is only what was read before the limit: there is more


@dataclass(frozen=True)
class LinkReport:
    checked: int  # addresses fetched
    dead: int  # of them
    errors: list[Problem]
    warnings: list[Problem]


def targets(checked: Checked) -> list[Target]:
    """Every http(s) address the issue's message links to or loads, with where each is written.

    The issue's Markdown, links and images; newsletter.yaml's addresses that reach
    the message (archive_url, the logo); and addresses written as they are in the
    project's HTML template. Not the unsubscribe link (a {token} pattern, one per
    subscriber), nor the issue's own web page, which the send publishes.
    """
    source, site_source, site = checked.source, checked.project.site_source, checked.project.site
    found: dict[str, Target] = {}

    def add(url: str, place: Place, *, image: bool = False) -> None:
        if urlsplit(url).scheme.lower() in ("http", "https"):
            target = found.setdefault(url, Target(url))
            target.image = target.image or image
            target.places.append(place)

    for href, loc, offset in issue_links(source):
        add(href, partial(source.problem, loc, line_offset=offset))
    for i, item in enumerate(checked.issue.items):
        for j, link in enumerate(item.links):
            add(link.url, partial(source.problem, ("items", i, "links", j, "url")))
        if item.image:
            add(item.image.src, partial(source.problem, ("items", i, "image", "src")), image=True)
    if site.archive_url:
        add(site.archive_url, partial(site_source.problem, ("archive_url",)))
    if site.theme.logo:
        add(site.theme.logo.src, partial(site_source.problem, ("theme", "logo", "src")), image=True)
    _template_addresses(checked, found, add)
    return list(found.values())


def _template_addresses(checked: Checked, found: dict[str, Target], add: Callable[..., None]) -> None:
    template = checked.project.templates / HTML_TEMPLATE
    try:
        lines = template.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError):
        return
    html = Composer.prepare(checked.rendered).personalise(TYPICAL_SUBSCRIBER, PREVIEW_SECRET).html
    built = scan(html)
    written = [(url, False) for url in built.links] + [(image.src, True) for image in built.images]
    for url, image in written:
        line = next((n for n, text in enumerate(lines, 1) if url in text), None)
        if url not in found and line is not None:
            add(url, partial(_template_problem, template, line), image=image)


def _template_problem(template: Path, line: int, message: str) -> Problem:
    return Problem(template, message, line)


def check_links(checked: Checked, *, timeout: float = DEFAULT_TIMEOUT) -> LinkReport:
    """Fetch every address of `checked` (see `targets`) and say which are dead, redirected or heavy."""
    found = targets(checked)
    outcomes = asyncio.run(_fetch_all(found, timeout))
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for target, outcome in zip(found, outcomes, strict=True):
        if outcome.dead:
            errors += _said(target, f"link {target.url} is dead: {outcome.dead}")
            continue
        if outcome.final:
            warnings += _said(
                target, f"link {target.url} redirects ({outcome.status}) to {outcome.final}: link there directly"
            )
        if target.image and outcome.size is not None and outcome.size > IMAGE_BYTES:
            size = f"over {IMAGE_BYTES // 1024}" if outcome.partly else f"{outcome.size / 1024:.0f}"
            warnings += _said(
                target,
                f"image {target.url} is {size} KB: every subscriber who opens the email "
                f"downloads it; make it smaller than {IMAGE_BYTES // 1024} KB",
            )
    dead = sum(1 for outcome in outcomes if outcome.dead)
    return LinkReport(len(found), dead, _in_order(errors), _in_order(warnings))


def _said(target: Target, message: str) -> list[Problem]:
    """`message` at every place `target` is written, without the password of any address in it."""
    return [place(_USERINFO.sub(r"\1…@", message)) for place in target.places]


def _in_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (str(p.file or ""), p.line or 0, p.column or 0))


async def _fetch_all(found: list[Target], timeout: float) -> list[Outcome]:
    gate = asyncio.Semaphore(AT_ONCE)
    async with httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        limits=httpx.Limits(max_connections=AT_ONCE),
        event_hooks={"response": [_stay_on_the_web]},
    ) as client:

        async def one(target: Target) -> Outcome:
            async with gate:
                try:
                    # httpx's timeout is for each read; this one is for the whole address, a slow trickle included.
                    return await asyncio.wait_for(_fetch(client, target), timeout)
                except (TimeoutError, httpx.TimeoutException):
                    return Outcome(target.url, dead=f"no answer within {timeout:g} s")

        return await asyncio.gather(*(one(target) for target in found))


async def _fetch(client: httpx.AsyncClient, target: Target) -> Outcome:
    url = target.url
    try:
        try:
            response = await client.head(url)
            if response.status_code < 400 and (not target.image or "content-length" in response.headers):
                return _outcome(url, response, int(response.headers.get("content-length", 0)) or None)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # a server that drops HEAD: ask as a browser does
        async with client.stream("GET", url) as response:
            if not target.image or response.status_code >= 400:
                return _outcome(url, response)  # the answer is known without its body
            if response.headers.get("content-length"):
                return _outcome(url, response, int(response.headers["content-length"]))
            read = await _bytes_up_to(response, IMAGE_BYTES)
            return _outcome(url, response, read, partly=read > IMAGE_BYTES)
    except httpx.TooManyRedirects:
        return Outcome(url, dead=f"it redirects in a loop (or more than {MAX_REDIRECTS} times)")
    except httpx.ConnectError as exc:
        return Outcome(url, dead=f"cannot connect ({_reason(exc)})")
    except httpx.TimeoutException:
        raise  # said once, for the whole address, above
    except Exception as exc:  # whatever stops the fetch (a port over 65535, a host IDNA refuses) leaves it dead
        return Outcome(url, dead=_reason(exc))


class _NotFollowed(Exception):
    """A redirect that `_stay_on_the_web` refused; its message says why."""


async def _stay_on_the_web(response: httpx.Response) -> None:
    """Before a redirect is followed: refuse one that leaves the web (see `redirect_refusal`)."""
    if not response.has_redirect_location:
        return
    location = response.headers["location"]
    scheme = location.partition(":")[0].lower() if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", location) else ""
    if scheme and scheme not in ("http", "https"):
        raise _NotFollowed(f"it redirects to a {scheme}: address, not a web page")
    try:
        host = response.url.join(location).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        raise _NotFollowed(f"it redirects to {location}, which is not an address") from None
    page = await _addresses(response.url.raw_host.decode("ascii"))
    why = redirect_refusal(host, page, await _addresses(host))
    if why:
        raise _NotFollowed(why)


def redirect_refusal(host: str, page: list[Address], target: list[Address]) -> str | None:
    """Why a redirect from a page at the addresses `page` to `host`, at the addresses `target`, is not followed.

    Never to a link-local address, where cloud machines serve their own credentials, nor to the unspecified
    one (which reaches this machine); and from the public internet never into a private network or this
    machine, as browsers' Private Network Access refuses too: no subscriber could follow it there, and the
    request would be this machine's, not a reader's. None when it is followed.
    """
    target = [a.ipv4_mapped or a if isinstance(a, IPv6Address) else a for a in target]
    for address in target:
        if address.is_unspecified:
            return f"it redirects to {host}, the unspecified address, which reaches this machine; not followed"
        if address.is_link_local:
            return f"it redirects to {host}, a link-local address (cloud machines' own secrets are there); not followed"
    if page and all(a.is_global for a in page) and not all(a.is_global for a in target):
        return (
            f"it redirects from the web to {host}, on a private network or this machine, which no subscriber "
            "reaches; not followed"
        )
    return None


async def _addresses(host: str) -> list[Address]:
    """The addresses `host` names: itself when it is one, else what it resolves to (none when it does not)."""
    try:
        return [ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []  # httpx says why when it tries
    return [ip_address(str(info[4][0]).partition("%")[0]) for info in found]


def _outcome(url: str, response: httpx.Response, size: int | None = None, *, partly: bool = False) -> Outcome:
    if response.status_code >= 400:
        at = f" (at {response.url}, where it redirects)" if response.history else ""
        return Outcome(url, dead=f"{response.status_code} {response.reason_phrase}".strip() + at)
    if response.history:
        return Outcome(url, final=str(response.url), status=response.history[0].status_code, size=size, partly=partly)
    return Outcome(url, size=size, partly=partly)


async def _bytes_up_to(response: httpx.Response, limit: int) -> int:
    """How many bytes the body has, reading no more than one past `limit`."""
    seen = 0
    async for chunk in response.aiter_bytes():
        seen += len(chunk)
        if seen > limit:
            break
    return seen


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # anyio's task groups wrap what went wrong
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
