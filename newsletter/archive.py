"""The web archive: an index of the published issues, each issue's web version and share pages, and an Atom feed.

One renderer for both ways of publishing it: `newsletter serve` answers
`Archive.page(...)` under `archive_url`, and `newsletter archive --out DIR`
writes the same bytes as static files (`write_archive`).

Below `archive_url` the layout is: `""` the index, `"<id>/"` an issue (its
identity: its `id:`, or its file's name, percent-encoded), `"<id>/share/<item>-<post>.html"`
the share page of each of its sample posts (share.py), `"feed.xml"` the feed.
Nothing else is a page: a path is looked up among those names, never
joined to a folder, so `..`, absolute or encoded paths find nothing.

An issue is published once it has been sent to the list (a recipient
recorded `sent` in the send ledger; a `--test` copy records nothing), or
when its file says `published: true`; `published: false` keeps it out even
after a send (a draft, or an issue taken down). Issue files that do not pass
`check` are left out, with a warning.

Its web version is the email itself, rendered as `build` renders it, filled
for no one: no name, no address, no token. Its Unsubscribe link points at
the index's "Leaving the list", which says how to leave.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote
from xml.etree import ElementTree as ET

import jinja2
from markupsafe import Markup

from .errors import NewsletterError, Problem
from .files import write_atomically
from .ledger import sent_issues
from .model import Issue, Item, Site
from .pipeline import check
from .project import Project, default_templates
from .render import _render_template, page_environment
from .share import COPY_CSS, SharedPost, script, share_page_name, shared_posts
from .slug import why_not_a_name
from .state import ledger_path
from .validation import load_site

HTML = "text/html; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"
INDEX = ""
FEED = "feed.xml"
INDEX_TEMPLATE = "archive.html.j2"
SHARE_TEMPLATE = "share.html.j2"
# Where the web version's Unsubscribe link goes: the index's explanation of how to leave.
LEAVING = "../#unsubscribe"
# What fills a web version's slots: nothing of anyone. Other `subscriber.*` slots get their fallbacks.
NO_ONE = {"name": "", "email": "", "unsubscribe_url": LEAVING}

_ATOM_NS = "http://www.w3.org/2005/Atom"
# What `archive --out` wrote last time, so that a page no longer published (a draft now) goes too.
MANIFEST = ".newsletter-archive.json"
RESERVED = {"index.html", FEED, MANIFEST}  # ids that would name the archive's own files
_SHARE_FILE = re.compile(r"share/[0-9]+-[0-9]+\.html")


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Published:
    """An issue the archive shows."""

    identity: str
    path: Path
    issue: Issue
    html: str  # its web version

    @property
    def name(self) -> str:
        """Its page's path below the archive URL, as it appears in a link."""
        return f"{quote(self.identity, safe='')}/"


@dataclass(frozen=True)
class _Checked:
    """One issue file's outcome, kept while the file (and the site and templates) stay as they were."""

    key: tuple
    issue: Issue | None
    identity: str | None
    html: str | None
    problems: tuple[Problem, ...]


class Archive:
    """The archive of one project, kept current: each call of `page` sees the files and the ledger as they are now.

    Rendering an issue is the expensive step (Jinja, MJML, premailer): it is
    done once per version of its file, site file and templates, which are
    told apart by their size, times and inode. Asking for a page when nothing
    changed costs a few `stat`s. Safe to share between threads.
    """

    def __init__(self, project: Project) -> None:
        """NewsletterError when `newsletter.yaml` names no `archive_url`: the feed and links need it."""
        self.project = project
        self._site = project.site
        if not self._site.archive_folder:
            raise NewsletterError(
                Problem(
                    project.site_file,
                    "archive_url is not set: the web archive needs the address it is published at "
                    "(its feed and its links name it); add archive_url: https://...",
                    field="archive_url",
                )
            )
        self._lock = threading.Lock()
        self._state: tuple | None = None
        self._site_key: tuple | None = None
        self._checked: dict[Path, _Checked] = {}
        self._pages: dict[str, Page] = {}
        self._published: list[Published] = []
        self._warnings: list[Problem] = []
        self._inputs: tuple | None = None

    # -- what others ask -------------------------------------------------

    def page(self, relative_path: str, *, refresh: bool = True, decoded: bool = False) -> Page | None:
        """The page at `relative_path` below the archive URL, or None (a 404).

        "" is the index, "<id>/" an issue, "<id>/share/<item>-<post>.html" a
        sample post's share page, "feed.xml" the feed. The id is percent-encoded,
        as in a link; `decoded` takes it decoded, as a web framework passes a path,
        and encodes it again, so that an id that reads as another's encoded form
        ("a%20b" and "a b") finds only its own page. `refresh=False` answers from
        what was built last, without looking at the files (a server refreshes on its own beat).
        """
        pages = self.pages() if refresh else self._pages
        # No id holds a '/': encoding all but the slashes encodes the id alone.
        return pages.get(quote(relative_path, safe="/") if decoded else relative_path)

    def pages(self) -> dict[str, Page]:
        """Every page, by its path below the archive URL."""
        self._refresh()
        return self._pages

    @property
    def published(self) -> list[Published]:
        """The published issues, newest first."""
        self._refresh()
        return self._published

    @property
    def warnings(self) -> list[Problem]:
        """Why issue files were left out: they do not pass `check`, or share another's id."""
        self._refresh()
        return self._warnings

    # -- keeping current -------------------------------------------------

    def _refresh(self) -> None:
        with self._lock:
            files = self._issue_files()
            site_key = (_stat_key(self.project.site_file), *_tree_key(self.project.templates))
            ledger = ledger_path(self.project.root)
            state = (tuple((p, _stat_key(p)) for p in files), site_key, _stat_key(ledger), _stat_key(_wal(ledger)))
            if state == self._state:
                return
            if site_key != self._site_key:
                self._reload_site()
                self._site_key = site_key
            self._checked = {path: self._check(path, site_key) for path in files}
            if self._build(files, ledger):
                self._state = state

    def _issue_files(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self.project.issues), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise NewsletterError(
                Problem(self.project.issues, f"cannot read the issues folder: {exc.strerror}")
            ) from None
        # Hidden files are editors' (`.#x.yaml`, `.x.yaml.swp`), never issues: `new` cannot make one.
        return [Path(e.path) for e in entries if e.name.endswith((".yaml", ".yml")) and not e.name.startswith(".")]

    def _reload_site(self) -> None:
        # A broken site file: every issue's check says what is wrong; the index keeps the last good look.
        with contextlib.suppress(NewsletterError):
            self._site = load_site(self.project.site_file)
        if not self._site.archive_folder:  # taken out while serving: keep the address the archive is served at
            self._site = self.project.site

    def _check(self, path: Path, site_key: tuple) -> _Checked:
        key = (_stat_key(path), site_key)
        known = self._checked.get(path)
        if known is not None and known.key == key:
            return known
        try:
            checked = check(path, web=True)
        except NewsletterError as exc:
            return _Checked(key, None, None, None, tuple(exc.problems))
        html = with_copy_buttons(checked.rendered.html.fill(NO_ONE))
        return _Checked(key, checked.issue, checked.rendered.identity, html, ())

    def _build(self, files: list[Path], ledger: Path) -> bool:
        """Build the pages; False when the ledger could not be read (the last pages stay, and it is tried again)."""
        warnings: list[Problem] = []
        undecided = [c.identity for c in self._checked.values() if c.issue is not None and c.issue.published is None]
        try:
            sent = sent_issues(ledger, undecided)
        except NewsletterError as exc:
            # A damaged ledger must not take down what was published: keep the pages built last,
            # or, with none yet, show only the issues whose files say they are published.
            problems = [
                Problem(p.file, f"the web archive cannot tell which issues were sent: {p.message}")
                for p in exc.problems
            ]
            if self._inputs is not None:
                self._warnings = problems
                return False
            sent, warnings = set(), problems
        # During a send the ledger changes with every message; the pages only when an issue is first sent.
        inputs = (tuple((path, self._checked[path].key) for path in files), frozenset(sent))
        if inputs == self._inputs:
            return True
        self._inputs = inputs
        published: dict[str, Published] = {}
        for path in files:
            c = self._checked[path]
            if c.issue is None or c.identity is None or c.html is None:
                warnings.append(Problem(path, "left out of the web archive: it does not pass newsletter check"))
                warnings += c.problems
                continue
            if not (c.issue.published or (c.issue.published is None and c.identity in sent)):
                continue
            if c.identity in RESERVED:
                warnings.append(
                    Problem(path, f"left out of the web archive: its id, {c.identity}, names a file of the archive")
                )
                continue
            if c.identity in published:
                other = published[c.identity].path.name
                warnings.append(Problem(path, f"left out of the web archive: {other} has the same id, {c.identity}"))
                continue
            published[c.identity] = Published(c.identity, path, c.issue, c.html)
        issues = sorted(published.values(), key=lambda p: (p.issue.date, p.identity), reverse=True)
        pages = {INDEX: Page(self._index(issues), HTML), FEED: Page(self._feed(issues), ATOM)}
        for p in issues:
            pages[p.name] = Page(p.html.encode("utf-8"), HTML)
            for item, posts in zip(p.issue.items, shared_posts(self._site, p.issue, p.identity), strict=True):
                for post in posts:
                    pages[share_page_name(p.identity, post.number)] = Page(self._share_page(p, item, post), HTML)
        self._pages, self._published, self._warnings = pages, issues, warnings
        return True

    def write(self, out: Path) -> list[Path]:
        """Write every page as static files under `out`; return their paths.

        The index is `index.html`, each issue `<id>/index.html` (so that a web
        server shows it at `<id>/`), the feed `feed.xml`; each written in one
        step. Pages an earlier run wrote that are no longer published (an issue
        made a draft again) are removed, and nothing else in `out`.
        """
        # The issues' pages first, the index and the feed last: a reader (or rsync) part-way through
        # never finds a link to a page not written yet.
        pages = sorted(self.pages().items(), key=lambda item: item[0] in (INDEX, FEED))
        files = {_file_name(name): page.body for name, page in pages}
        ours = _written_before(out)
        theirs = sorted(name for name in files if name not in ours and (out / name).exists())
        if theirs:
            # The organisation's own index.html (or anything else) is never written over.
            raise NewsletterError(
                [
                    Problem(
                        out / name,
                        "is not a file an earlier `newsletter archive` wrote here; move it, or choose another folder",
                    )
                    for name in theirs
                ]
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NewsletterError(Problem(Path(exc.filename or out), f"cannot write: {exc.strerror}")) from None
        written = []
        for name, body in files.items():
            path = out / name
            if path.parent != out:
                try:
                    path.parent.mkdir(exist_ok=True)
                except OSError as exc:
                    raise NewsletterError(Problem(path.parent, f"cannot write: {exc.strerror}")) from None
            written.append(write_atomically(path, body))
        _remove_unpublished(out, ours - set(files))
        write_atomically(out / MANIFEST, json.dumps(sorted(files), indent=1).encode("utf-8"))
        return written

    # -- the pages -------------------------------------------------------

    def _index(self, issues: list[Published]) -> bytes:
        site = self._site
        lang = issues[0].issue.lang if issues else "en"
        context = {
            "site": site,
            "theme": site.theme,
            "lang": lang,
            "leave_address": site.unsubscribe_mailto or site.reply_to,
            "issues": [
                {
                    "title": p.issue.title,
                    "date": p.issue.date,
                    "lang": p.issue.lang,
                    "dir": p.issue.direction,
                    "preheader": p.issue.preheader,
                    "href": p.name,
                }
                for p in issues
            ],
        }
        templates = self.project.templates
        return _render_template(_environment(templates), templates, INDEX_TEMPLATE, context).encode("utf-8")

    def _share_page(self, published: Published, item: Item, post: SharedPost) -> bytes:
        issue = published.issue
        context = {
            "site": self._site,
            "theme": self._site.theme,
            "lang": issue.lang,
            "dir": issue.direction,
            "issue": issue,
            "item": item,
            "post": post,
            "mastodon": any(link.network == "mastodon" for link in post.links),
            "copy_css": Markup(COPY_CSS),
            "script": Markup(script()),
        }
        templates = self.project.templates
        return _render_template(_environment(templates), templates, SHARE_TEMPLATE, context).encode("utf-8")

    def _feed(self, issues: list[Published]) -> bytes:
        return atom_feed(self._site, issues)


def atom_feed(site: Site, issues: list[Published]) -> bytes:
    """The Atom 1.0 feed (RFC 4287) of `issues`, built as XML, so that every text is escaped."""
    folder = site.archive_folder
    assert folder is not None
    ET.register_namespace("", _ATOM_NS)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{_ATOM_NS}}}{tag}", attributes)
        element.text = text
        return element

    feed = ET.Element(f"{{{_ATOM_NS}}}feed")
    add(feed, "id", folder)
    add(feed, "title", site.organisation)
    # The newest issue's date; a feed with none yet needs some fixed time, and the same bytes every time.
    add(feed, "updated", _timestamp(issues[0].issue.date) if issues else "1970-01-01T00:00:00Z")
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{folder}{FEED}")
    add(feed, "link", rel="alternate", type="text/html", href=folder)
    author = add(feed, "author")
    add(author, "name", site.organisation)
    for p in issues:
        entry = add(feed, "entry")
        # A tag URI (RFC 4151) under the list's own name, not the page's URL: it stays the same
        # when the archive moves, so feed readers do not show every issue again.
        add(entry, "id", f"tag:{site.list_identifier},{p.issue.date.isoformat()}:{quote(p.identity, safe='')}")
        add(entry, "title", p.issue.title)
        add(entry, "updated", _timestamp(p.issue.date))
        add(entry, "link", rel="alternate", type="text/html", href=f"{folder}{p.name}")
        if p.issue.preheader:
            add(entry, "summary", p.issue.preheader)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def write_archive(project: Project, out: Path) -> list[Path]:
    """The archive of `project` as static files under `out` (see `Archive.write`)."""
    return Archive(project).write(out)


def with_copy_buttons(html: str) -> str:
    """An issue's web version with the archive's script, which puts a Copy button beside each sample post."""
    head = html.find("</head>")
    if head != -1:
        html = f"{html[:head]}<style>{COPY_CSS}</style>{html[head:]}"
    body = html.rfind("</body>")
    if body == -1:
        return html
    return f"{html[:body]}<script>{script()}</script>{html[body:]}"


def _file_name(name: str) -> str:
    """Where the page `name` goes below the output folder: a web server decodes the URL to find it."""
    if name == INDEX:
        return "index.html"
    if name == FEED:
        return FEED
    if name.endswith("/"):
        return f"{unquote(name.removesuffix('/'))}/index.html"
    return unquote(name)


def _written_before(out: Path) -> set[str]:
    try:
        listed = json.loads((out / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return set()
    # Only names this module writes: a manifest edited by hand must not make us delete anything else.
    return {name for name in listed if isinstance(name, str) and _ours(name)}


def _ours(name: str) -> bool:
    if name in ("index.html", FEED):
        return True
    identity, slash, rest = name.partition("/")
    return (
        bool(slash)
        and why_not_a_name(identity) is None
        and (rest == "index.html" or _SHARE_FILE.fullmatch(rest) is not None)
    )


def _remove_unpublished(out: Path, names: Iterable[str]) -> None:
    for name in names:
        path = out / name
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue
        # Its folders too (a share page's share/, then the issue's), each only when empty: whatever else is there stays.
        for folder in path.relative_to(out).parents[:-1]:
            try:
                (out / folder).rmdir()
            except OSError:
                break


def _environment(templates: Path) -> jinja2.Environment:
    # The project's own archive.html.j2 if it has one, else the shipped one (a project made before
    # the archive has email templates only).
    return page_environment(templates, default_templates())


def _timestamp(date: dt.date) -> str:
    return f"{date.isoformat()}T00:00:00Z"


def _stat_key(path: Path) -> tuple | None:
    try:
        s = path.stat()
    except OSError:
        return None
    return (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)


def _tree_key(folder: Path) -> tuple:
    try:
        return tuple((p.name, _stat_key(p)) for p in sorted(folder.iterdir()))
    except OSError:
        return ()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")
