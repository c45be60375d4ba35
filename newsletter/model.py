"""The issue file and the site file, as validated models.

The models are the single source of the issue format: `newsletter schema`
publishes them as JSON Schema, and `check` validates against them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from .slug import why_not_a_name
from .text import LINE_BREAKS
from .unsubscribe import make_token
from .verp import RESERVED as _VERP_RESERVED

LINK_SCHEMES = ("http", "https", "mailto")
# What right-to-left scripts' languages are written in; sets dir="rtl".
RTL_LANGUAGES = {"ar", "arc", "ckb", "dv", "fa", "ha", "he", "khw", "ks", "ps", "sd", "ur", "yi"}

# RFC 5322 dot-atom local part (atext: letters, digits, !#$%&'*+-/=?^_`{|}~;
# dots only between atoms) at a domain of RFC 1035 labels. Quoted local parts
# and backslashes are left out on purpose: relays disagree on what they mean,
# so the address that goes out could differ from the ledger's.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_COLOUR = re.compile(r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")
# RFC 5322 2.1.1: no header line may be longer; servers refuse the message ("500 Line too long").
HEADER_LINE_MAX = 998
# RFC 3986's characters, less the comma: in List-Unsubscribe, a space, '<', '>'
# or ',' in the address would end it and start another target.
_URL_CHARACTER = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+;=%]")
# The token of the longest address `is_email_address` accepts.
_LONGEST_TOKEN = len(make_token("key", "list", "a" * 254))


def _one_line(value: str) -> str:
    if any(c in LINE_BREAKS for c in value):
        raise ValueError("must be on one line (it contains a line break)")
    return value


def link_problem(href: str) -> str | None:
    """Why `href` cannot be a link in an email, or None if it can.

    The one link rule: for link fields (`url:`, `src:`, the site's addresses) and for links in Markdown.
    """
    try:
        parts = urlsplit(href)
    except ValueError as exc:  # such as an unclosed [ of an IPv6 host
        return f"link '{href}' is not a valid address ({exc})"
    scheme = parts.scheme.lower()
    if not scheme:
        return f"link '{href}' is not a full address; write it with https://"
    if scheme not in LINK_SCHEMES:
        return f"link '{href}' has '{scheme}:'; only http, https and mailto links are allowed"
    if scheme in ("http", "https") and not parts.netloc:
        return f"link '{href}' has no host"
    return None


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank: write the post, or remove it")
    return value


def _url(value: str) -> str:
    _one_line(value)
    why = link_problem(value)
    if why:
        raise ValueError(why)
    return value


def _web_url(value: str) -> str:
    if urlsplit(_url(value)).scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http or https address")
    return value


def is_email_address(value: str) -> bool:
    """A plain ASCII dot-atom address: what any SMTP relay accepts without SMTPUTF8, read one way by all.

    At most 254 characters, 64 before the @ (RFC 5321); no control
    characters, spaces, quotes or backslashes anywhere.
    """
    local = value.rpartition("@")[0]
    return len(value) <= 254 and len(local) <= 64 and _ADDRESS.fullmatch(value) is not None


def _email(value: str) -> str:
    if not is_email_address(value):
        raise ValueError(f"'{value}' is not an email address")
    return value


def _bounce_address(value: str) -> str:
    _email(value)
    local = value.rpartition("@")[0]
    if len(local) + _VERP_RESERVED > 64:
        raise ValueError(
            f"the part before the @ may have at most {64 - _VERP_RESERVED} characters: each message's return path "
            f"adds '+' and a token of up to {_VERP_RESERVED - 1} to it, and mail allows 64 there"
        )
    return value


def _issue_id(value: str) -> str:
    reason = why_not_a_name(value)  # the same rule as the file names it stands in for
    if reason:
        raise ValueError(f"cannot be an issue id: {reason}")
    return value


def _lang(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError(f"'{value}' is not a BCP 47 language tag (like en, fr-CA, ar)")
    return value


def _unsubscribe_pattern(value: str) -> str:
    _web_url(value)  # {token} changes neither the scheme nor the host; the message shows what was written
    if not value.isascii():
        # It goes into the List-Unsubscribe header, which must be ASCII.
        raise ValueError("must be written in ASCII (an international domain in its xn-- form)")
    if "{token}" not in value:
        raise ValueError("must contain {token}, where each subscriber's signed token goes")
    bad = next((c for c in value.replace("{token}", "") if not _URL_CHARACTER.fullmatch(c)), None)
    if bad is not None:
        shown = "a space" if bad == " " else f"'{bad}'"
        raise ValueError(
            f"must not contain {shown}: in the List-Unsubscribe header it would end the address "
            f"or make another one; write it percent-encoded (%{ord(bad):02X})"
        )
    # The URL, with a subscriber's token, is one unbreakable piece of a header line.
    longest = len("List-Unsubscribe: <>,") + len(value.replace("{token}", "t" * _LONGEST_TOKEN))
    if longest > HEADER_LINE_MAX:
        raise ValueError(
            f"is too long: with the longest subscriber token the List-Unsubscribe header line "
            f"would be {longest} characters, and mail allows {HEADER_LINE_MAX}"
        )
    return value


def _archive_url(value: str) -> str:
    _web_url(value)
    # Written out whole in the plain-text part (below each sample post, in the footer), where a space or a
    # quote ends it, and published in every message and page, where a password would be everyone's.
    bad = next((c for c in value if c.isascii() and c != "," and not _URL_CHARACTER.fullmatch(c)), None)
    if bad is not None:
        shown = "a space" if bad == " " else f"'{bad}'"
        raise ValueError(
            f"must not contain {shown}: where the address is written out, in the plain-text part, it would end "
            f"there; write it percent-encoded (%{ord(bad):02X})"
        )
    if "@" in urlsplit(value).netloc:
        raise ValueError("must not hold a user name or password: every message and page of the archive shows it")
    return value


def _source_url(value: str) -> str:
    parts = urlsplit(_web_url(value))
    # The export carries addresses and the request a key: in the clear only to this machine, as smtp's rule.
    if parts.scheme.lower() != "https" and not is_loopback(parts.hostname or ""):
        raise ValueError("must be an https address (http is allowed only to this machine: localhost, 127.0.0.1)")
    return value


def is_loopback(host: str) -> bool:
    """`host` is this machine: where what is unencrypted never crosses a network."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _list_id(value: str) -> str:
    if len(value) > 255:  # RFC 2919 3
        raise ValueError(f"must be at most 255 characters (it has {len(value)})")
    return value


Text = Annotated[str, StringConstraints(min_length=1)]
Post = Annotated[Text, AfterValidator(_not_blank)]  # shared as it is: white space alone opens an empty compose window
Line = Annotated[str, StringConstraints(min_length=1), AfterValidator(_one_line)]
Markdown = Annotated[str, Field(description="Markdown: paragraphs, **bold**, _em_, [links](https://...), lists")]
Url = Annotated[str, AfterValidator(_url), Field(description="an http, https or mailto link")]
WebUrl = Annotated[str, AfterValidator(_web_url)]
Email = Annotated[str, AfterValidator(_email)]
Lang = Annotated[str, AfterValidator(_lang), Field(description="BCP 47 language tag, e.g. en, fr-CA")]
Colour = Annotated[str, StringConstraints(pattern=_COLOUR.pattern)]
IssueId = Annotated[str, AfterValidator(_issue_id)]
Hashtag = Annotated[str, StringConstraints(pattern=r"^[^\s#]+$"), Field(description="without the leading #")]
# Where a sample post can be shared from (share.py says how); newsletter.yaml's `share:` picks and orders them.
Network = Literal["x", "bluesky", "mastodon", "threads", "whatsapp", "facebook", "linkedin"]
DEFAULT_SHARE: list[Network] = ["x", "bluesky", "mastodon", "threads", "whatsapp", "facebook"]


def _no_repeats(networks: list[str]) -> list[str]:
    seen = [n for i, n in enumerate(networks) if n in networks[:i]]
    if seen:
        raise ValueError(f"names {seen[0]} twice")
    return networks


Networks = Annotated[list[Network], AfterValidator(_no_repeats)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# An item's badge; the key in the issue file is `status:`.
Badge = Literal["new", "ongoing", "update", "closed"]


class Image(_Strict):
    src: WebUrl
    alt: Text = Field(description="what the image shows, for people who cannot see it")
    width: Annotated[int, Field(ge=16, le=600)] | None = Field(None, description="display width in px")


class Link(_Strict):
    text: Line
    url: Url
    primary: bool = Field(False, description="show as a button: the item's main call to action")


class Item(_Strict):
    status: Badge
    title: Line
    hashtags: list[Hashtag] = []
    image: Image | None = None
    body: Markdown = ""
    actions: list[Markdown] = Field([], description='"What you can do": one step each, Markdown')
    sample_posts: list[Post] = Field([], description="ready-to-post messages, shown so they are easy to copy")
    share: Networks | None = Field(
        None, description="where this item's sample posts can be shared: only these of the issue's (and the site's)"
    )
    notes: Markdown = Field("", description="shown after the sample posts")
    links_title: Line | None = Field(None, description="heading over the links")
    links: list[Link] = []


class Contact(_Strict):
    name: Line
    role: Line | None = None
    email: Email


class Issue(_Strict):
    """One newsletter issue: `issues/<slug>.yaml`."""

    model_config = ConfigDict(title="Newsletter issue")

    id: IssueId | None = Field(
        None,
        description="what the send ledger knows this issue by; a real send needs it. "
        "Keep it when you rename the file; give every issue its own",
    )
    title: Line
    date: dt.date
    lang: Lang = "en"
    subject: Line | None = Field(None, description="defaults to the title")
    preheader: Line | None = Field(None, description="the inbox preview text")
    intro: Markdown = ""
    items: Annotated[list[Item], Field(min_length=1)]
    contact: Contact | None = None
    share: Networks | None = Field(
        None, description="where sample posts can be shared: only these of newsletter.yaml's `share:`"
    )
    published: bool | None = Field(
        None,
        description="the web archive: true shows it even before it is sent; false never shows it, "
        "even once sent (a draft, or an issue taken down); left out, it shows once sent to the list",
    )

    @property
    def subject_line(self) -> str:
        return self.subject or self.title

    @property
    def direction(self) -> str:
        return "rtl" if self.lang.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


# A display name and an address, which RFC 5322 calls a mailbox: the site's `from:`. (Not a
# docstring: it would become a description in the published schema, which keeps its old name, "Sender".)
class Mailbox(_Strict):
    name: Line
    email: Email


class Logo(_Strict):
    src: WebUrl
    alt: Text
    width: Annotated[int, Field(ge=16, le=600)] = 160


class Theme(_Strict):
    primary: Colour = "#1a1a1a"
    accent: Colour = "#ffff00"
    background: Colour = "#f2f2f2"
    text: Colour = "#1a1a1a"
    link: Colour = "#0b5394"
    logo: Logo | None = None


Security = Literal["starttls", "ssl", "none"]


class Smtp(_Strict):
    host: Line = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Security = "starttls"
    username: Line | None = None


# GNU Mailman's bounce_info_stale_after: a score whose last bounce is this many days older than the next one starts
# again from 0, so that a mailbox full once a month does not add up to a suppression over a year.
SCORE_RESETS_AFTER_DAYS = 7


class Inbox(_Strict):
    """How `newsletter inbox` reads bounces and mailed unsubscribes."""

    soft_bounce_threshold: Annotated[float, Field(gt=0)] = Field(
        3.0,
        description="suppress an address once its bounce score reaches this (GNU Mailman's rule: a hard bounce "
        "adds 1, a soft one 0.5, at most once a day)",
    )
    score_resets_after_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        SCORE_RESETS_AFTER_DAYS,
        description="a bounce score starts again from 0 when the address's last bounce is more than this many days "
        "older than the next (GNU Mailman's bounce_info_stale_after)",
    )
    processed_folder: Annotated[str, StringConstraints(pattern=r"^\.?[A-Za-z0-9][A-Za-z0-9_-]*$")] = Field(
        ".Processed",
        description="the folder recognised messages are moved into: a Maildir sub-folder, or on IMAP the folder of "
        "that name without the leading dot (made when missing)",
    )
    host: Line | None = Field(
        None, description="the IMAP server to read (IMAPS, certificates verified) when no --maildir or --mbox is given"
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(993, description="the IMAPS port (implicit TLS)")
    username: Line | None = Field(None, description="the IMAP login; the password comes from NEWSLETTER_IMAP_PASSWORD")
    folder: Line = Field("INBOX", description="the IMAP folder bounces and mailed unsubscribes arrive in")


class Site(_Strict):
    """What is the same for every issue: `newsletter.yaml`."""

    model_config = ConfigDict(title="Newsletter site")

    organisation: Line
    from_: Mailbox = Field(alias="from")
    reply_to: Email | None = None
    postal_address: Text = Field(description="CASL and CAN-SPAM want it in every message")
    list_id: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$"), AfterValidator(_list_id)] | None
    ) = Field(None, description="List-Id, e.g. roundup.example.org; defaults from the sender's domain")
    archive_url: Annotated[str, AfterValidator(_archive_url)] | None = Field(
        None, description="where past issues can be read on the web"
    )
    unsubscribe_url: Annotated[str, AfterValidator(_unsubscribe_pattern)] = Field(
        description="e.g. https://example.org/unsubscribe?t={token}"
    )
    unsubscribe_mailto: Email | None = None
    bounce_address: Annotated[str, AfterValidator(_bounce_address)] | None = Field(
        None,
        description="where bounces go, e.g. bounces@example.org: each message of a send gets its own return path "
        "(bounces+TOKEN@example.org, the recipient and issue signed in TOKEN), so `inbox` can tell whose it was",
    )
    suppressions_source: Annotated[str, AfterValidator(_source_url)] | None = Field(
        None,
        description="where `send` reads who left before every send, e.g. https://example.org/unsubscribe/"
        "suppressions.csv (what `serve` exports); a send that cannot read it is refused",
    )
    share: Networks = Field(
        DEFAULT_SHARE,
        description="where readers can share sample posts from, in this order: x, bluesky, mastodon, threads, "
        "whatsapp, facebook, linkedin (mastodon, facebook and linkedin go through the web archive: archive_url)",
    )
    sample_recipient: Email = Field("subscriber@example.org", description="whom `build` addresses its .eml to")
    theme: Theme = Theme()
    smtp: Smtp = Smtp()
    inbox: Inbox = Inbox()

    @property
    def domain(self) -> str:
        return self.from_.email.rpartition("@")[2]

    @property
    def postal_lines(self) -> list[str]:
        """`postal_address`'s lines, without blank ones or the commas that end some: a footer joins them with its
        own, so "Canada" is never followed by a comma with nothing after it."""
        lines = (line.strip().rstrip(",").rstrip() for line in self.postal_address.splitlines())
        return [line for line in lines if line]

    @property
    def list_identifier(self) -> str:
        return self.list_id or f"newsletter.{self.domain}"

    @property
    def archive_folder(self) -> str | None:
        """`archive_url` as a folder, where the index is and below which each issue is; None without one.

        A missing final slash is supplied, and a query or fragment, which would
        end up in the middle of every page's address, is left out.
        """
        if not self.archive_url:
            return None
        parts = urlsplit(self.archive_url)
        folder = parts.path if parts.path.endswith("/") else parts.path + "/"
        return urlunsplit((parts.scheme, parts.netloc, folder, "", ""))

    def web_version_url(self, identity: str) -> str | None:
        """Where the issue known as `identity` is read on the web: `<archive folder><identity>/`."""
        folder = self.archive_folder
        return folder and f"{folder}{quote(identity, safe='')}/"
