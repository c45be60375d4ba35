"""Warnings: things that are allowed but probably not what the advisor wants."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import Problem
from .markdown import issue_links
from .model import Issue, Site
from .post_length import Network, length_limited, too_long
from .share import chosen_networks, needs_archive, pages_folder, share_text
from .yamlsource import Source

# Gmail clips a message whose HTML passes about 102 KB, hiding the rest,
# including the unsubscribe link; warn well before.
GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 90 * 1024
# RFC 2606 reserves these for examples: a link there is a placeholder.
PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net")


def is_placeholder(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if urlsplit(url).scheme.lower() == "mailto":
        host = url.rpartition("@")[2].lower()
    return any(host == d or host.endswith("." + d) for d in PLACEHOLDER_DOMAINS)


def lint(issue: Issue, source: Source, html_bytes: int, site: Site | None = None) -> list[Problem]:
    """The issue's warnings; sample posts are measured for the networks each item shares to (newsletter.yaml's
    `share:`, narrowed by the issue and the item), or for every network with a length limit without `site`."""
    warnings: list[Problem] = []
    for href, loc, offset in issue_links(source):
        if is_placeholder(href):
            warnings.append(source.problem(loc, f"placeholder link {href}: put the real address", line_offset=offset))
    for i, item in enumerate(issue.items):
        for j, link in enumerate(item.links):
            if is_placeholder(link.url):
                loc = ("items", i, "links", j, "url")
                warnings.append(source.problem(loc, f"placeholder link {link.url}: put the real address"))
        for j, post in enumerate(item.sample_posts):
            text = share_text(post, item.hashtags)
            networks = None if site is None else chosen_networks(site, issue, item)
            over = too_long(text, length_limited(networks))
            if over:
                with_hashtags = text != share_text(post, [])  # not merely the trailing white space dropped
                warnings.append(source.problem(("items", i, "sample_posts", j), _too_long(over, with_hashtags)))
        if item.image and is_placeholder(item.image.src):
            loc = ("items", i, "image", "src")
            warnings.append(source.problem(loc, f"placeholder image {item.image.src}: put the real address"))
    if not issue.preheader:
        warnings.append(
            source.problem(("title",), "no preheader: inboxes will show the first words of the body instead")
        )
    kib = html_bytes / 1024
    if html_bytes > GMAIL_CLIP_BYTES:
        warnings.append(
            Problem(
                source.path,
                f"the HTML is {kib:.0f} KB: Gmail clips messages over 102 KB, hiding the end and the unsubscribe link",
            )
        )
    elif html_bytes > WARN_BYTES:
        warnings.append(Problem(source.path, f"the HTML is {kib:.0f} KB, close to Gmail's 102 KB clipping limit"))
    warnings.sort(key=lambda p: (p.line or 0, p.column or 0))
    return warnings


def _too_long(over: list[tuple[Network, int]], with_hashtags: bool) -> str:
    networks = " and ".join(f"{n.name} ({length} of {n.limit}: {n.counting})" for n, length in over)
    return f"sample post{' with its hashtags' if with_hashtags else ''} is too long for {networks}"


def share_warnings(issue: Issue, source: Source, site: Site) -> list[Problem]:
    """What the sample posts' share links leave out: networks newsletter.yaml does not list, and, without
    archive_url, those that need the archive's share pages (said once, at the first sample posts)."""
    warnings: list[Problem] = []
    narrowed = [(("share",), issue.share)] + [(("items", i, "share"), item.share) for i, item in enumerate(issue.items)]
    for loc, names in narrowed:
        unknown = [name for name in names or [] if name not in site.share]
        if unknown:
            warnings.append(
                source.problem(
                    loc,
                    f"{', '.join(unknown)}: not in newsletter.yaml's share: ({', '.join(site.share) or 'none'}), "
                    "so left out; an issue or item can only narrow that list",
                )
            )
    if not pages_folder(site, issue):
        posting = [(i, item) for i, item in enumerate(issue.items) if item.sample_posts]
        needing = [
            name for name in site.share if any(name in chosen_networks(site, issue, item) for _, item in posting)
        ]
        needing = [name for name in needing if needs_archive(name)]
        if needing:
            why = (
                "need archive_url in newsletter.yaml"
                if not site.archive_folder
                else "need the issue in the web archive, which published: false keeps it out of"
            )
            warnings.append(
                source.problem(
                    ("items", posting[0][0], "sample_posts"),
                    f"share links for {', '.join(needing)} {why} (they go through the web archive's share pages), "
                    "so the email leaves them out",
                )
            )
    return warnings
