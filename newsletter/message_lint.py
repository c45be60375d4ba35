"""Warnings about the message as a subscriber gets it: what spam filters score, and what the law asks of it.

They read one copy, built as `send` builds it, for a typical subscriber.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import Problem
from .html_scan import Scan, scan
from .message import ENCODED_WORD_MAX, FOLD_AT, Personalised
from .model import HEADER_LINE_MAX, Issue, Site
from .render import HTML_TEMPLATE, TEXT_TEMPLATE
from .subscribers import address_key
from .yamlsource import Loc, Source

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def message_lint(copy: Personalised, issue_source: Source, site_source: Source, templates: Path) -> list[Problem]:
    issue, site = copy.composer.rendered.issue, copy.composer.rendered.site
    found = scan(copy.html)
    places = _Places(issue, issue_source, site, site_source, templates)
    return [
        *_reply_to(site, site_source),
        *_hidden_text(found, issue, templates / HTML_TEMPLATE),
        *_headers(copy.message(), places),
        *_images(found, places),
        *_footer(found, copy, templates),
    ]


def _reply_to(site: Site, source: Source) -> list[Problem]:
    # rspamd's SPOOF_REPLYTO (rules/misc.lua): Reply-To's domain is not From's, exactly, and a recipient is at From's.
    if not site.reply_to:
        return []
    warnings = []
    if site.unsubscribe_mailto and address_key(site.unsubscribe_mailto) == address_key(site.reply_to):
        warnings.append(
            source.problem(
                ("unsubscribe_mailto",),
                f"unsubscribe_mailto is reply_to ({site.reply_to}): people's replies land where `inbox` reads "
                "unsubscribes, and go unread by the team; give unsubscribes an address of their own",
            )
        )
    theirs, ours = site.reply_to.rpartition("@")[2].lower(), site.domain.lower()
    if theirs == ours:
        return warnings
    return [
        *warnings,
        source.problem(
            ("reply_to",),
            f"reply_to {site.reply_to} is on another domain than from ({site.from_.email}): rspamd adds 6 points "
            f"(SPOOF_REPLYTO), half-way to spam, to every copy sent to an address at {ours}; "
            f"reply to an address at {ours}, or send from {theirs}",
        ),
    ]


def _hidden_text(found: Scan, issue: Issue, template: Path) -> list[Problem]:
    warnings = []
    preheader = " ".join((issue.preheader or "").split())
    for text in dict.fromkeys(found.low_contrast):
        what = "the hidden preheader" if preheader and text.text == preheader else f"the text '{_short(text.text)}'"
        warnings.append(
            Problem(
                template,
                f"{what} is coloured {text.colour} on {text.background} as spam filters read the HTML "
                "(SpamAssassin's HTML_FONT_LOW_CONTRAST, hidden or not): give it the colour of the body text",
            )
        )
    return warnings


def header_problems(message: bytes) -> list[tuple[str, str]]:
    """Each header of `message` that is not folded as RFC 5322 and RFC 2047 ask, with why: (name, why)."""
    head = message.split(b"\r\n\r\n", 1)[0]
    found: list[tuple[str, str]] = []
    name = ""
    for raw in head.split(b"\r\n"):
        first = raw[:1] not in (b" ", b"\t")
        line = raw.decode("ascii", "replace")
        if first:
            name = line.partition(":")[0]
        if not raw.isascii():
            found.append((name, "has characters that are not ASCII: they must be written as encoded-words"))
        if len(line) > HEADER_LINE_MAX:
            found.append((name, f"has a line of {len(line)} characters, and mail allows {HEADER_LINE_MAX}"))
        elif len(line) > FOLD_AT and _could_fold(line, len(name) + 1 if first else 0):
            found.append((name, f"has a line of {len(line)} characters where it could be folded at {FOLD_AT}"))
        for word in _ENCODED_WORD.findall(line):
            if len(word) > ENCODED_WORD_MAX:
                found.append((name, f"has an encoded-word of {len(word)} characters; at most {ENCODED_WORD_MAX}"))
    return found


def _could_fold(line: str, start: int) -> bool:
    """A fold (a line break before a space) fits within FOLD_AT with something other than space before it."""
    content = len(line) - len(line[start:].lstrip(" \t"))
    return any(line[i] in " \t" for i in range(content + 1, min(len(line), FOLD_AT + 1)))


# Where each header's words come from, to name the line to change.
_HEADER_SOURCES: dict[str, tuple[str, Loc]] = {
    "subject": ("issue", ("subject",)),
    "from": ("site", ("from", "name")),
    "list-id": ("site", ("organisation",)),
    "list-unsubscribe": ("site", ("unsubscribe_url",)),
    "reply-to": ("site", ("reply_to",)),
}


def _headers(message: bytes, places: _Places) -> list[Problem]:
    warnings = []
    for name, why in header_problems(message):
        message_text = f"the message's {name} header {why}"
        kind, loc = _HEADER_SOURCES.get(name.lower(), ("", ()))
        if kind == "issue":
            loc = loc if places.issue.subject else ("title",)
            warnings.append(places.issue_source.problem(loc, message_text))
        elif kind == "site":
            warnings.append(places.site_source.problem(loc, message_text))
        else:  # To, Date, Message-ID: the subscriber's or the tool's own
            warnings.append(Problem(None, message_text))
    return warnings


def _images(found: Scan, places: _Places) -> list[Problem]:
    warnings = []
    for image in found.images:
        why = []
        if not (image.alt or "").strip():
            why.append("has no alt text: whoever cannot see it, or whose mail client blocks images, is told nothing")
        if image.width is None:
            why.append(
                "has no width: Outlook shows an image at the size of its file, which can be wider than the email"
            )
        if image.src.lower().startswith("http:"):
            why.append("is loaded over plain http: mail clients block it or mark the message as not secure; use https")
        warnings += [places.of(image.src, f"image {image.src} {reason}") for reason in why]
    return warnings


def _footer(found: Scan, copy: Personalised, templates: Path) -> list[Problem]:
    site = copy.composer.rendered.site
    unsubscribe = copy.values["unsubscribe_url"]
    text = " ".join(copy.text.split())
    warnings = []
    for part, template, shown, linked in (
        ("HTML", HTML_TEMPLATE, found.text, unsubscribe in found.links),
        ("plain-text", TEXT_TEMPLATE, text, unsubscribe in text),
    ):
        path = templates / template
        missing = [line for line in site.postal_lines if " ".join(line.split()) not in shown]
        if missing:
            warnings.append(
                Problem(
                    path,
                    f"the {part} part does not show the postal address (no '{missing[0]}'): "
                    "CASL and CAN-SPAM want it in every message",
                )
            )
        elif _dangling_comma(site.postal_lines, shown):
            warnings.append(
                Problem(
                    path,
                    f"the {part} part ends the postal address with a comma; join site.postal_lines instead",
                )
            )
        if not linked:
            warnings.append(
                Problem(
                    path,
                    f"the {part} part has no unsubscribe link ({{{{ unsubscribe_url }}}}): "
                    "CASL and CAN-SPAM want one in every message",
                )
            )
    return warnings


def _dangling_comma(lines: list[str], text: str) -> bool:
    address = r"[\s,]*".join(re.escape(" ".join(line.split())) for line in lines)
    return re.search(address + r"\s*,", text) is not None


class _Places:
    """Where a value of the built message was written: the issue, newsletter.yaml, or else the template."""

    def __init__(self, issue: Issue, issue_source: Source, site: Site, site_source: Source, templates: Path):
        self.issue, self.issue_source, self.site, self.site_source = issue, issue_source, site, site_source
        self.templates = templates

    def of(self, src: str, message: str) -> Problem:
        for i, item in enumerate(self.issue.items):
            if item.image and item.image.src == src:
                return self.issue_source.problem(("items", i, "image", "src"), message)
        logo = self.site.theme.logo
        if logo and logo.src == src:
            return self.site_source.problem(("theme", "logo", "src"), message)
        template = self.templates / HTML_TEMPLATE
        try:
            lines = template.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError):
            lines = []
        line = next((n for n, text in enumerate(lines, 1) if src in text), None)
        return Problem(template, message, line)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
