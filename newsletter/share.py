"""Share links for sample posts: the text that is posted, the networks' compose links, and the share pages.

The text shared is the post as written (line breaks as `\\n`, trailing white space dropped: a YAML `|`
block ends in a line break nobody typed), followed by the item's hashtags that it does not already
hold (compared as the networks compare them, ignoring letter case), each with its `#`, after one
space. The email shows that same text, the Copy button copies it and every link carries it: what a
reader sees is what they post.

Each network takes the post one of three ways (URL formats as their public documentation gave them in 2026):

- the text itself, percent-encoded (RFC 3986: everything but letters, digits and `-._~`, as UTF-8):
  X, https://x.com/intent/tweet?text= (docs.x.com, "X for Websites: Web intent"); Bluesky,
  https://bsky.app/intent/compose?text= (docs.bsky.app, "Action Intent Links"); Threads,
  https://www.threads.com/intent/post?text= (developers.facebook.com, "Threads Web Intents"; the older
  www.threads.net address forwards there); WhatsApp, https://wa.me/?text= (faq.whatsapp.com, "How to use
  click to chat": a link with a message and no number lets the reader pick the chat);
- the post's share page in the web archive, whose Open Graph tags make the preview card, since these
  networks take only a URL: Facebook, https://www.facebook.com/sharer/sharer.php?u= (the documented
  share dialog, facebook.com/dialog/share, needs an app id, which a newsletter does not have; sharer.php,
  which needs none, is what share buttons without an app use), LinkedIn,
  https://www.linkedin.com/sharing/share-offsite/?url= (its current link form; LinkedIn's documentation
  now describes only its JavaScript Share plugin);
- Mastodon, which has no single address: every server answers https://SERVER/share?text= (mastodon/mastodon,
  SharesController and app/views/shares/show.html.haml, which fill the compose form from `text`), so the
  link goes to the share page with `#mastodon`, whose script asks the reader for their server once,
  remembers it, and forwards there (share.js).

A share page is `<archive>/<issue id>/share/<item>-<post>.html`, both counted from 1 in the issue's
order: the link of a post stays the same when another item's posts change.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from urllib.parse import quote

from .model import Issue, Item, Site
from .text import LINE_BREAKS

SCRIPT_FILE = Path(__file__).resolve().parent / "share.js"
MASTODON_FRAGMENT = "#mastodon"
# The Copy button the script adds, on an issue's web version as on a share page.
COPY_CSS = (
    "button.copy { font: inherit; font-size: 14px; font-weight: bold; padding: 3px 12px; margin: 0 10px 0 0; "
    "border: 2px solid currentColor; border-radius: 4px; background-color: #ffffff; color: #1a1a1a; cursor: pointer; }"
)


class Takes(Enum):
    TEXT = "text"  # the post's text, after the network's prefix
    PAGE = "page"  # the post's share page's URL, after the prefix
    MASTODON = "mastodon"  # the share page, which asks for the reader's server


@dataclass(frozen=True)
class Network:
    label: str
    takes: Takes
    prefix: str = ""


NETWORKS: dict[str, Network] = {
    "x": Network("X", Takes.TEXT, "https://x.com/intent/tweet?text="),
    "bluesky": Network("Bluesky", Takes.TEXT, "https://bsky.app/intent/compose?text="),
    "mastodon": Network("Mastodon", Takes.MASTODON),
    "threads": Network("Threads", Takes.TEXT, "https://www.threads.com/intent/post?text="),
    "whatsapp": Network("WhatsApp", Takes.TEXT, "https://wa.me/?text="),
    "facebook": Network("Facebook", Takes.PAGE, "https://www.facebook.com/sharer/sharer.php?u="),
    "linkedin": Network("LinkedIn", Takes.PAGE, "https://www.linkedin.com/sharing/share-offsite/?url="),
}


@dataclass(frozen=True)
class ShareLink:
    network: str
    label: str
    href: str


@dataclass(frozen=True)
class SharedPost:
    """One sample post, ready to share."""

    text: str
    number: str  # "<item>-<post>", counted from 1
    page: str | None  # its share page's URL; None without archive_url
    links: tuple[ShareLink, ...]

    @property
    def encoded(self) -> str:
        """The text percent-encoded: how pages carry it in an attribute for the script (mjml-python writes a line
        break or a direction mark in an attribute as a Rust escape, `\\n` or `\\u{200f}`; ASCII passes through)."""
        return encode(self.text)

    @property
    def page_links(self) -> tuple[ShareLink, ...]:
        """The links as its own share page shows them: Mastodon's asks on that page, without reloading it."""
        return tuple(
            ShareLink(link.network, link.label, MASTODON_FRAGMENT) if link.network == "mastodon" else link
            for link in self.links
        )


# Every line break YAML reads as one (a separator or NEL pasted from a word processor too) is the reader's `\n`.
_LINE_BREAK = re.compile(rf"\r\n|[{re.escape(LINE_BREAKS)}]")


def share_text(post: str, hashtags: Sequence[str]) -> str:
    """What is posted: `post` as written, then each of `hashtags` it does not hold yet (see the module's doc)."""
    text = _LINE_BREAK.sub("\n", post).rstrip()
    missing: list[str] = []
    for tag in hashtags:
        if not _holds(text, tag) and not any(tag.casefold() == m.casefold() for m in missing):
            missing.append(tag)
    return " ".join([text, *(f"#{tag}" for tag in missing)]) if missing else text


def _holds(text: str, tag: str) -> bool:
    # A whole tag: #Myanmar is not in #MyanmarSolidarity.
    return re.search(rf"(?<![\w#])#{re.escape(tag)}(?!\w)", text, re.IGNORECASE) is not None


def encode(value: str) -> str:
    """`value` percent-encoded as a query value: every character but RFC 3986's unreserved ones, as UTF-8."""
    return quote(value, safe="")


def chosen_networks(site: Site, issue: Issue, item: Item) -> list[str]:
    """The networks chosen for an item's posts: newsletter.yaml's, in its order, narrowed by the issue and the item."""
    return [
        name
        for name in site.share
        if (issue.share is None or name in issue.share) and (item.share is None or name in item.share)
    ]


def needs_archive(name: str) -> bool:
    """Whether a network's link goes through the post's share page, which only a web archive has."""
    return NETWORKS[name].takes is not Takes.TEXT


def pages_folder(site: Site, issue: Issue) -> str | None:
    """Where the issue's pages (its web version, its share pages) are: the web archive's folder; None without
    archive_url, or when the issue says `published: false`, which keeps it out of the archive."""
    return site.archive_folder if issue.published is not False else None


def networks_for(site: Site, issue: Issue, item: Item) -> list[str]:
    """The networks an item's posts get links to: those chosen; without share pages, those that take the text."""
    chosen = chosen_networks(site, issue, item)
    return chosen if pages_folder(site, issue) else [name for name in chosen if not needs_archive(name)]


def share_page_name(identity: str, number: str) -> str:
    """A share page's path below the archive URL, as in a link."""
    return f"{quote(identity, safe='')}/share/{number}.html"


def shared_posts(site: Site, issue: Issue, identity: str) -> list[list[SharedPost]]:
    """Every item's sample posts, ready to share, item by item (an empty list for an item without any)."""
    folder = pages_folder(site, issue)
    out = []
    for i, item in enumerate(issue.items, 1):
        names = networks_for(site, issue, item)
        posts = []
        for j, post in enumerate(item.sample_posts, 1):
            text = share_text(post, item.hashtags)
            number = f"{i}-{j}"
            page = f"{folder}{share_page_name(identity, number)}" if folder else None
            posts.append(SharedPost(text, number, page, tuple(_link(name, text, page) for name in names)))
        out.append(posts)
    return out


def _link(name: str, text: str, page: str | None) -> ShareLink:
    network = NETWORKS[name]
    if network.takes is Takes.TEXT:
        return ShareLink(name, network.label, network.prefix + encode(text))
    assert page is not None  # networks_for keeps these only with an archive
    if network.takes is Takes.PAGE:
        return ShareLink(name, network.label, network.prefix + encode(page))
    return ShareLink(name, network.label, page + MASTODON_FRAGMENT)


@cache
def script() -> str:
    """The archive pages' one script (Copy buttons, Mastodon's server): the same bytes in every page."""
    return SCRIPT_FILE.read_text(encoding="utf-8")


def script_hash() -> str:
    """The script's CSP source expression, so that a strict policy can allow exactly it."""
    digest = hashlib.sha256(script().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"
