"""Issue -> MJML -> responsive HTML with inlined CSS, and the plain-text part.

This is the expensive step (Jinja, MJML, premailer): it runs once per issue,
never once per subscriber. What differs per subscriber is left as slots.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.sandbox
from mjml import mjml2html

from . import markdown, outlook
from .errors import NewsletterError, Problem
from .model import Issue, Site
from .personalise import SlotRegistry, Slotted, SubscriberFields
from .share import pages_folder, shared_posts

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
STATUS_LABELS = {"new": "New", "ongoing": "Ongoing", "update": "Update", "closed": "Closed"}


@dataclass(frozen=True)
class Rendered:
    """One issue, rendered for everyone, with per-subscriber slots left open."""

    issue: Issue
    site: Site
    slug: str
    html: Slotted
    text: Slotted

    @property
    def identity(self) -> str:
        """What the send ledger and Message-IDs know the issue by: its `id:`, or its file's name."""
        return self.issue.id or self.slug


def render(issue: Issue, site: Site, slug: str, templates: Path, *, web: bool = False) -> Rendered:
    """The issue as everyone's email; with `web`, as its page in the web archive, which links to no copy of itself."""
    registry = SlotRegistry()
    context = {
        "issue": issue,
        "site": site,
        "theme": site.theme,
        "slug": slug,
        "status_labels": STATUS_LABELS,
        "subscriber": SubscriberFields(registry),
        "unsubscribe_url": registry.token("unsubscribe_url"),
        # "View in your browser": the same for every subscriber, so not a slot, and carrying nothing of theirs.
        "web_version_url": site.web_version_url(issue.id or slug) if pages_folder(site, issue) and not web else None,
        "web": web,
        # Each item's sample posts with their share links, item by item.
        "shares": shared_posts(site, issue, issue.id or slug),
    }
    env = environment(templates)
    mjml_source = _render_template(env, templates, HTML_TEMPLATE, context)
    text = _render_template(env, templates, TEXT_TEMPLATE, context)
    html = outlook.merge_conditionals(inline_css(mjml_to_html(mjml_source, templates / HTML_TEMPLATE)))
    return Rendered(
        issue,
        site,
        slug,
        Slotted.split(html, registry, is_html=True),
        Slotted.split(_tidy_text(text), registry, is_html=False),
    )


@lru_cache(maxsize=8)
def environment(templates: Path) -> jinja2.Environment:
    # Templates come with a project, and a project can come from anyone: in the
    # sandbox they can read what they are given but not reach Python (`os`,
    # `__globals__`, `__subclasses__`) nor change the issue, which both parts share.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates),
        # Issue text is data, never template; HTML-ish templates escape it.
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Compiling the templates is a sixth of a build; cache the bytecode.
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["markdown"] = markdown.to_html
    env.filters["markdown_inline"] = lambda s: markdown.to_html(s, inline=True)
    env.filters["markdown_text"] = markdown.to_text
    env.filters["wrap"] = markdown.wrap
    env.filters["long_date"] = long_date
    return env


def page_environment(*folders: Path) -> jinja2.Environment:
    """The sandboxed Jinja environment of the web pages (the archive's, the unsubscribe page's): HTML, so
    everything escaped; the first folder holding a template wins."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder) for folder in folders]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["long_date"] = long_date
    return env


def long_date(day: dt.date) -> str:
    """ "3 May 2021" on every platform (strftime's %-d is glibc's own); English for now."""
    return f"{day.day} {day:%B %Y}"


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsletter" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home only makes builds slower
        return None
    # Code compiled for the sandbox differs from code compiled without it (calls
    # go through its checks): files of its own keep a version of this tool from
    # before the sandbox, sharing the folder, from loading it, and the other way round.
    return jinja2.FileSystemBytecodeCache(str(folder), "sandboxed-%s.cache")


def mjml_to_html(source: str, template: Path) -> str:
    try:
        # fonts={}: no Google Fonts links, so the email and preview work offline.
        return mjml2html(source, disable_comments=True, fonts={})
    except (ValueError, RuntimeError) as exc:
        raise NewsletterError(Problem(template, f"MJML could not be turned into HTML: {exc}")) from None


def inline_css(html: str) -> str:
    import cssutils

    premailer = _import_premailer()

    # cssutils checks every CSS value against its profiles only to log
    # warnings we silence anyway, and compiling those regexes costs about 0.2 s
    # per process. Without profiles it checks nothing and changes no output.
    cssutils.profile.removeProfile(all=True)

    html = _STYLE.sub(_leave_mjml_styles_alone, html)
    # premailer drops the doctype, which keeps clients out of quirks mode.
    doctype = "<!doctype html>\n" if html.lstrip().lower().startswith("<!doctype html>") else ""
    try:
        return doctype + premailer.Premailer(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            # MJML's responsive layout lives in media queries and class names.
            keep_style_tags=False,
            remove_classes=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False).replace(' data-premailer="ignore"', "")  # left in Outlook-only comments
    except Exception as exc:  # premailer raises many kinds; each is a template problem
        raise NewsletterError(f"inlining CSS failed: {exc}") from None


def _import_premailer() -> types.ModuleType:
    """premailer, imported without loading requests when nothing else has.

    premailer imports requests (a tenth of a build) only to fetch external
    stylesheets, which `allow_network=False` forbids. It gets an empty
    stand-in for the length of its import; anyone importing requests later
    gets the real one.
    """
    if "premailer" in sys.modules or "requests" in sys.modules:
        import premailer

        return premailer
    sys.modules["requests"] = types.ModuleType("requests")
    try:
        import premailer
    finally:
        del sys.modules["requests"]
    return premailer


# Our template's own CSS starts with this comment; it is the CSS to inline.
INLINE_MARK = "/* inline */"
_STYLE = re.compile(r"<style\b([^>]*)>(.*?)</style>", re.S)


def _leave_mjml_styles_alone(match: re.Match[str]) -> str:
    """MJML's resets and media queries stay in the head, as MJML itself leaves them.

    Inlining them onto every table cell would add a fifth to the HTML and
    most of premailer's time, for clients that read head styles anyway.
    """
    if INLINE_MARK in match.group(2) or "media=" in match.group(1):  # premailer skips media styles itself
        return match.group(0)
    return f'<style data-premailer="ignore"{match.group(1)}>{match.group(2)}</style>'


def _render_template(env: jinja2.Environment, folder: Path, name: str, context: dict) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = Path(exc.filename) if exc.filename else folder / name
        raise NewsletterError(Problem(where, f"template error: {exc.message}", exc.lineno)) from None
    except jinja2.TemplateNotFound as exc:
        raise NewsletterError(Problem(folder / str(exc.name), "template not found")) from None
    except Exception as exc:
        # Templates are the user's code: any mistake there
        # (an undefined name, a filter called wrongly, a division by zero, runaway
        # recursion) needs the template's line, not a traceback.
        # The innermost template frame names the file: an included one if that is where it went wrong.
        where, line = folder / name, None
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.endswith(".j2"):
                where, line = Path(frame.filename), frame.lineno
                break
        message = getattr(exc, "message", None) or str(exc)
        raise NewsletterError(Problem(where, f"template error: {message}", line)) from None


def _tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"
